"""common/dvc_deps.py: every Python stage's DVC deps list exactly the repository modules it imports."""

from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from common import dvc_deps
from common.dvc_deps import REPO_ROOT, Problem, check, entry_modules, import_closure, main, write

# -- (a) the repository itself ------------------------------------------------------------------

def test_repository_dvc_yaml_deps_match_imports():
    problems, warnings = check(REPO_ROOT)
    report = "\n".join(f"{p.dvc_yaml}:\n" + "\n".join(p.lines()) for p in problems)
    assert not problems, (f"stages whose .py deps differ from their imports:\n{report}\n"
                          "fix: python -m common.dvc_deps --write")
    assert not warnings, "\n".join(warnings)


def test_repository_check_is_not_vacuous():
    """Every dvc.yaml in the repository has Python stages the check actually looked at."""
    files = dvc_deps.dvc_files(REPO_ROOT)
    assert REPO_ROOT / "dvc.yaml" in files and len(files) > 1
    for f in files:
        _, plans = dvc_deps.plan_file(f, REPO_ROOT)
        assert plans, f"{f}: no `python -m` stage found"
        for p in plans:
            assert p.wanted_py and all((p.workdir / w).is_file() for w in p.wanted_py), (f, p.name)


# -- (b) a tiny fake repository with a known closure ----------------------------------------------

FAKE_MODULES = {
    "common/__init__.py": "",                                           # empty: followed, not listed
    "common/util.py": "import os\nimport numpy as np\n\nVALUE = 1\n",
    "common/lazy.py": "def f():\n    from common import util  # submodule, inside a function\n    return util\n",
    "common/helpers/__init__.py": '"""Helpers."""\nfrom .core import helper  # re-export\n',
    "common/helpers/core.py": "from ..util import VALUE\n\ndef helper():\n    return VALUE\n",
    "common/helpers/unused.py": "X = 1\n",
    "papers/__init__.py": '"""Only a docstring: not code."""\n',
    "papers/demo/__init__.py": "",
    "papers/demo/config.py": "import common.util\n",
    "papers/demo/method.py": "from . import config\nfrom common.helpers import helper\n",
    "papers/demo/late.py": "",
    "papers/demo/evaluate.py": dedent("""\
        import json
        from .method import helper
        from common import lazy
        from common.util import VALUE  # an attribute, not a submodule


        def main():
            from papers.demo import late
            return late
        """),
    "papers/demo/report.py": "import common.helpers.core\n",
    "papers/demo/claims.yaml": "claims: []\n",
}

EVALUATE_CLOSURE = {
    "papers/demo/evaluate.py", "papers/demo/method.py", "papers/demo/config.py", "papers/demo/late.py",
    "common/util.py", "common/lazy.py", "common/helpers/__init__.py", "common/helpers/core.py",
}
# report.py does not import config.py: the paper's stages load their schema by name (common.cli.paper_schema)
REPORT_CLOSURE = {"papers/demo/report.py", "papers/demo/config.py", "common/helpers/__init__.py",
                  "common/helpers/core.py", "common/util.py"}


def make_fake_repo(root: Path, dvc_yaml: str) -> Path:
    for rel, text in FAKE_MODULES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "papers/demo/dvc.yaml").write_text(dvc_yaml)
    return root / "papers/demo/dvc.yaml"


def test_closure_of_fake_repo(tmp_path):
    make_fake_repo(tmp_path, "stages: {}\n")
    closure = import_closure(tmp_path, "papers.demo.evaluate")
    assert closure.files == EVALUATE_CLOSURE
    assert not closure.unresolved
    assert import_closure(tmp_path, "papers.demo.report").files == REPORT_CLOSURE


def test_closure_follows_code_in_package_init(tmp_path):
    """Once papers/__init__.py holds code, it and what it imports join every closure below it."""
    make_fake_repo(tmp_path, "stages: {}\n")
    (tmp_path / "papers/__init__.py").write_text("from common import lazy\n")
    assert import_closure(tmp_path, "papers.demo.report").files == \
        REPORT_CLOSURE | {"papers/__init__.py", "common/lazy.py", "common/util.py"}


def test_closure_reports_imports_that_do_not_resolve(tmp_path):
    make_fake_repo(tmp_path, "stages: {}\n")
    (tmp_path / "papers/demo/late.py").write_text("import common.gone\n")
    closure = import_closure(tmp_path, "papers.demo.evaluate")
    assert closure.unresolved == {"common.gone"} and closure.files == EVALUATE_CLOSURE


MISSING_ONE = """\
stages:
  evaluate:
    wdir: ../..
    cmd: python -m papers.demo.evaluate seed=1
    deps:
      - papers/demo/evaluate.py
      - papers/demo/method.py
      - papers/demo/config.py
      - papers/demo/late.py
      - common/util.py
      - common/helpers/__init__.py
      - common/helpers/core.py
      - data/prepared
"""


def test_check_reports_exactly_the_missing_module(tmp_path, capsys):
    dvc_yaml = make_fake_repo(tmp_path, MISSING_ONE)
    problems, warnings = check(tmp_path, [dvc_yaml])
    assert problems == [Problem("papers/demo/dvc.yaml", "evaluate", ["common/lazy.py"], [], [])]
    assert not warnings
    assert main(["--check", "--root", str(tmp_path), str(dvc_yaml)]) == 1
    out = capsys.readouterr().out
    assert "papers/demo/dvc.yaml:\n  evaluate: missing common/lazy.py\n" in out


# -- (c) --write keeps non-.py deps, their order and the comments ---------------------------------

BEFORE = """\
# Demo: evaluate -> report.  (header comment)
stages:
  evaluate:
    wdir: ../..
    cmd: python -m papers.demo.evaluate seed=1
    deps:
      # code and data
      - papers/demo/method.py   # the method
      - data/prepared  # the data
      - papers/demo/evaluate.py
      - common/util.py
      # a comment above the models
      - models/base
    params:
      - profile   # shared
    outs:
      - reports/demo:
          cache: false

  report:
    wdir: ../..
    cmd: accelerate launch --num_processes 2 -m papers.demo.report profile=full
    deps:
      - papers/demo/claims.yaml
      - papers/demo/report.py
      - common/helpers/unused.py  # stale: nothing imports it
      - reports/demo
    outs:
      - reports/demo/README.md:
          cache: false

  shell:
    cmd: echo not python && ls
    deps:
      - papers/demo/anything.py
"""

AFTER = """\
# Demo: evaluate -> report.  (header comment)
stages:
  evaluate:
    wdir: ../..
    cmd: python -m papers.demo.evaluate seed=1
    deps:
      # code and data
      - common/helpers/__init__.py
      - common/helpers/core.py
      - common/lazy.py
      - common/util.py
      - papers/demo/config.py
      - papers/demo/evaluate.py
      - papers/demo/late.py
      - papers/demo/method.py   # the method
      - data/prepared  # the data
      # a comment above the models
      - models/base
    params:
      - profile   # shared
    outs:
      - reports/demo:
          cache: false

  report:
    wdir: ../..
    cmd: accelerate launch --num_processes 2 -m papers.demo.report profile=full
    deps:
      - common/helpers/__init__.py
      - common/helpers/core.py
      - common/util.py
      - papers/demo/config.py
      - papers/demo/report.py
      - papers/demo/claims.yaml
      - reports/demo
    outs:
      - reports/demo/README.md:
          cache: false

  shell:
    cmd: echo not python && ls
    deps:
      - papers/demo/anything.py
"""


def test_write_keeps_non_py_deps_and_comments(tmp_path, capsys):
    dvc_yaml = make_fake_repo(tmp_path, BEFORE)
    problems, _ = check(tmp_path, [dvc_yaml])
    assert [(p.stage, p.stale) for p in problems] == [("evaluate", []), ("report", ["common/helpers/unused.py"])]

    assert main(["--write", "--root", str(tmp_path), str(dvc_yaml)]) == 0
    assert dvc_yaml.read_text() == AFTER
    assert "rewrote deps in papers/demo/dvc.yaml" in capsys.readouterr().out

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    assert [d for d in stages["evaluate"]["deps"] if not d.endswith(".py")] == ["data/prepared", "models/base"]
    assert [d for d in stages["report"]["deps"] if not d.endswith(".py")] == ["papers/demo/claims.yaml",
                                                                               "reports/demo"]
    assert set(stages["evaluate"]["deps"]) >= EVALUATE_CLOSURE
    assert stages["shell"]["deps"] == ["papers/demo/anything.py"]  # not a python stage: untouched

    assert check(tmp_path, [dvc_yaml]) == ([], [])
    assert write(tmp_path, [dvc_yaml]) == []  # idempotent
    assert dvc_yaml.read_text() == AFTER


@pytest.mark.parametrize("cmd, deps", [
    ("cmd: python -m papers.demo.report", ""),
    ("cmd: python -m papers.demo.report", "deps:\n"),
    ("cmd: python -m papers.demo.report", "deps: []\n"),
    ("cmd:\n  - echo start\n  - python -m papers.demo.report\n", ""),
    ("cmd:\n- python -m papers.demo.report  # indentless list\n", ""),
])
def test_write_inserts_deps_for_a_stage_without_any(tmp_path, cmd, deps):
    cmd = cmd.rstrip("\n").replace("\n", "\n    ")
    dvc_yaml = make_fake_repo(tmp_path, f"stages:\n  report:\n    wdir: ../..\n    {cmd}\n"
                                        + (f"    {deps}" if deps else "") + "    outs:\n      - reports/demo\n")
    write(tmp_path, [dvc_yaml])
    assert dvc_yaml.read_text() == (
        f"stages:\n  report:\n    wdir: ../..\n    {cmd}\n"
        "    deps:\n"
        "      - common/helpers/__init__.py\n"
        "      - common/helpers/core.py\n"
        "      - common/util.py\n"
        "      - papers/demo/config.py\n"
        "      - papers/demo/report.py\n"
        "    outs:\n      - reports/demo\n")


def test_paths_are_relative_to_the_stage_wdir(tmp_path):
    """A stage without wdir in papers/demo/dvc.yaml runs there: its deps are relative to that folder."""
    dvc_yaml = make_fake_repo(tmp_path, "stages:\n  r:\n    cmd: python -m papers.demo.report\n"
                                        "    deps:\n      - report.py\n")
    write(tmp_path, [dvc_yaml])
    assert yaml.safe_load(dvc_yaml.read_text())["stages"]["r"]["deps"] == [
        "../../common/helpers/__init__.py", "../../common/helpers/core.py", "../../common/util.py", "config.py", "report.py"]


def test_flow_style_deps_are_refused(tmp_path, capsys):
    dvc_yaml = make_fake_repo(tmp_path, "stages:\n  r:\n    wdir: ../..\n    cmd: python -m papers.demo.report\n"
                                        "    deps: [papers/demo/report.py]\n")
    assert main(["--write", "--root", str(tmp_path), str(dvc_yaml)]) == 2
    assert "flow-style" in capsys.readouterr().err


@pytest.mark.parametrize("cmd, modules", [
    ("python -m papers.x.evaluate", ["papers.x.evaluate"]),
    ("python -m papers.x.evaluate compare.nfe=[10,20] profile=full", ["papers.x.evaluate"]),
    ("python3.11 -u -m common.stages.train", ["common.stages.train"]),
    ("/usr/bin/python3 -mcommon.stages.train", ["common.stages.train"]),
    ("accelerate launch --multi_gpu --num_processes 2 -m common.stages.train_base_model profile=full",
     ["common.stages.train_base_model"]),
    ("python -W ignore -X dev -m a.b", ["a.b"]),
    ("accelerate launch --module a.b", ["a.b"]),
    ("accelerate launch --num_processes 2 train.py -m not.this", []),
    ("TQDM_DISABLE=1 python -m a.b && python -m c.d", ["a.b", "c.d"]),
    ("python -c 'import a' ; python - < x.py", []),
    (["python -m a.b", "python -m c.d"], ["a.b", "c.d"]),
    ("python script.py -m not.this", []),
    ("echo python -m a.b", []),
    ("dvc repro", []),
])
def test_entry_modules(cmd, modules):
    assert entry_modules(cmd) == modules
