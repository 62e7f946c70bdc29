"""common/cli.py and the user-facing edges of every stage: one-line errors (exit 2), --help, --cfg job,
missing / unreadable inputs naming the file and the stage that makes it, and `python -m common.config --check`."""

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.cli import check, check_main, run_main
from common.config import ConfigError, MissingInputError, UnreadableInputError, UserError, require

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A throw-away repository root (params only, no dvc.yaml) that the stages resolve paths against."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "common").mkdir()
    for paper in ("new_knowledge",):
        (tmp_path / "papers" / paper).mkdir(parents=True)
        shutil.copy(REPO / "papers" / paper / "params.yaml", tmp_path / "papers" / paper / "params.yaml")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return tmp_path


def _python_m(module, *args, cwd=REPO, env_root=None):
    env = None
    if env_root is not None:
        import os

        env = {**os.environ, "DVC_ROOT": str(env_root), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


# --------------------------------------------------------------------------- run_main: UserError -> one line, exit 2
def test_user_error_exits_2_with_one_line_and_no_traceback(capsys):
    def main(argv=None):
        print("started")
        raise MissingInputError("models/x is missing (made by stage s: run dvc repro dvc.yaml:s)")

    with pytest.raises(SystemExit) as e:
        run_main(main, [])
    assert e.value.code == 2
    out = capsys.readouterr()
    assert out.out == "started\n"
    assert out.err == "error: models/x is missing (made by stage s: run dvc repro dvc.yaml:s)\n"


def test_a_multi_line_user_error_is_still_printed_on_one_line(capsys):
    def main(argv=None):
        raise UserError("first\nsecond")

    with pytest.raises(SystemExit):
        run_main(main, [])
    assert capsys.readouterr().err == "error: first second\n"


def test_other_exceptions_keep_their_traceback():
    def main(argv=None):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_main(main, [])


def test_run_main_passes_argv_and_returns_normally():
    seen = []
    run_main(lambda argv=None: seen.append(argv), ["a=1"])
    assert seen == [["a=1"]]


def test_stage_process_prints_one_line_and_exits_2():
    proc = _python_m("common.stages.build_knowledge", "knowledge.max_entities=-5")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("error: params.yaml: knowledge.max_entities = -5 must be >= 0 "
                           "(command line override 'knowledge.max_entities=-5')\n")
    assert "Traceback" not in proc.stderr + proc.stdout


def test_paper_stage_process_with_a_missing_model_names_file_and_stage(root):
    """The user's case: no models/knowledge_lm used to give a Hugging Face hub error about repo ids."""
    proc = _python_m("papers.new_knowledge.categorize", "profile=tiny", env_root=root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: models/knowledge_lm is missing (made by stage pretrain_lm: run dvc repro dvc.yaml:pretrain_lm)"]


def test_every_stage_entry_point_runs_through_run_main():
    stages = sorted((REPO / "common" / "stages").glob("*.py")) + sorted(
        p for p in (REPO / "papers").glob("*/*.py") if p.name != "report.py")  # report.py: owned elsewhere
    mains = [p for p in stages if 'if __name__ == "__main__":' in p.read_text()]
    assert len(mains) > 20
    assert [p for p in mains if "run_main(main)" not in p.read_text().split('if __name__ == "__main__":')[1]] == []


# --------------------------------------------------------------------------- --help / --cfg job
def test_help_of_a_root_stage(capsys):
    from common.stages import build_knowledge

    with pytest.raises(SystemExit) as e:
        build_knowledge.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m common.stages.build_knowledge [KEY=VALUE ...] [--cfg job] [-h]\n")
    assert build_knowledge.__doc__.strip().split("\n\n")[0].strip() in out  # what the stage does
    assert "Parameters: params.yaml, then" in out and "Hydra's grammar" in out
    assert "DVC stage dvc.yaml:build_knowledge depends on the params profile, knowledge" in out
    assert "python -m common.config --check ." in out


def test_help_of_a_paper_stage(capsys):
    from papers.new_knowledge import finetune

    with pytest.raises(SystemExit) as e:
        finetune.main(["-h", "this=is ignored"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m papers.new_knowledge.finetune ")
    assert "Stage `finetune`" in out
    assert "params.yaml and papers/new_knowledge/params.yaml" in out
    assert "python -m papers.new_knowledge.finetune profile=tiny slick.n_prompts=" in out  # an override example
    assert "papers/new_knowledge/config.py" in out and "slick, study" in out
    assert "python -m common.config --check papers/new_knowledge" in out


def test_help_from_the_command_line_exits_0():
    proc = _python_m("papers.new_knowledge.categorize", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m papers.new_knowledge.categorize ")
    assert proc.stderr == ""


def test_cfg_job_prints_the_resolved_config_and_does_nothing_else(root, capsys):
    from common.stages import build_knowledge

    with pytest.raises(SystemExit) as e:
        build_knowledge.main(["profile=tiny", "--cfg", "job", "knowledge.max_entities=7"])
    assert e.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["profile"] == "tiny"
    assert cfg["knowledge"]["max_entities"] == 7  # the override
    assert cfg["data"]["name"] == "digits"  # the tiny overlay
    assert not (root / "data").exists()  # the stage did not run


def test_cfg_job_of_a_paper_from_the_command_line():
    proc = _python_m("papers.new_knowledge.finetune", "--cfg", "job", "study.epochs=4")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["study"]["epochs"] == 4 and "slick" in cfg and "base_model" in cfg


def test_cfg_job_still_validates(capsys):
    from common.stages import build_knowledge

    with pytest.raises(ConfigError, match="knowledge.max_entities = -5"):
        build_knowledge.main(["--cfg", "job", "knowledge.max_entities=-5"])


@pytest.mark.parametrize("argv, match", [(["--cfg", "hydra"], "--cfg takes one of"), (["--verbose"], "unknown option"),
                                         (["--cfg"], "--cfg takes one of")])
def test_bad_flags_are_user_errors(argv, match):
    from common.stages import build_knowledge

    with pytest.raises(ConfigError, match=match):
        build_knowledge.main(argv)


# --------------------------------------------------------------------------- missing / unreadable inputs
def _assert_missing(e, path: str, stage: str, dvc_yaml: str = "dvc.yaml"):
    assert isinstance(e, MissingInputError) and isinstance(e, FileNotFoundError)
    assert str(e) == f"{path} is missing (made by stage {stage}: run dvc repro {dvc_yaml}:{stage})"


def test_missing_knowledge_lm_names_file_and_stage(root):
    from common.config import load_config
    from papers.new_knowledge.config import NewKnowledgeConfig
    from papers.new_knowledge.inputs import load_base

    cfg = load_config(NewKnowledgeConfig, paper="new_knowledge")
    with pytest.raises(MissingInputError) as e:
        load_base(cfg)
    _assert_missing(e.value, "models/knowledge_lm", "pretrain_lm")


def test_missing_lm_folder_contents_and_user_set_paths(tmp_path):
    from common.lm import load_lm

    (tmp_path / "lm").mkdir()
    with pytest.raises(MissingInputError) as e:
        load_lm(tmp_path / "lm")
    _assert_missing(e.value, str(tmp_path / "lm" / "config.json"), "pretrain_lm")
    with pytest.raises(MissingInputError, match=r"is missing \(base_lm = '/nope' in params\)$"):
        load_lm("/nope/lm", hint="base_lm = '/nope' in params")


def test_missing_shared_artefacts_name_file_and_stage(tmp_path):
    from common.clip import load_clip
    from common.data import MissingDataError, load_split
    from common.evaluation import load_classifier
    from common.knowledge import load_corpus, load_entity_questions, load_knowledge_base
    from common.models import load_diffusion_model
    from common.scenes import load_scenes

    t = tmp_path
    cases = [
        (lambda: load_split(t / "prepared", "train"), t / "prepared", "prepare_data"),
        (lambda: load_scenes(t / "scenes", "hq"), t / "scenes", "build_scenes"),
        (lambda: load_knowledge_base(t / "facts"), t / "facts", "build_knowledge"),
        (lambda: load_corpus(t / "corpus"), t / "corpus", "build_knowledge"),
        (lambda: load_diffusion_model(t / "base_model"), t / "base_model", "train_base_model"),
        (lambda: load_classifier(t / "classifier"), t / "classifier", "train_classifier"),
        (lambda: load_clip(t / "clip", None, None, stage="train_scene_clip"), t / "clip", "train_scene_clip"),
    ]
    for load, path, stage in cases:
        with pytest.raises(MissingInputError) as e:
            load()
        _assert_missing(e.value, str(path), stage)
    with pytest.raises(MissingDataError):  # the data loaders keep their own subclass
        load_split(t / "prepared", "train")
    with pytest.raises(MissingInputError, match=r"questions.*EntityQuestions"):
        load_entity_questions(t / "eq")


def test_the_stage_is_found_in_the_pipelines_outs():
    """A model another paper's stage makes names that stage, not the loader's default."""
    with pytest.raises(MissingInputError) as e:
        require(REPO / "models" / "ddpm_ip" / "__absent__", "train_base_model")
    _assert_missing(e.value, "models/ddpm_ip/__absent__", "train", "papers/ddpm_ip/dvc.yaml")
    with pytest.raises(MissingInputError) as e:
        require(REPO / "models" / "__absent_everywhere__")
    assert str(e.value) == "models/__absent_everywhere__ is missing (no DVC stage lists it in its outs)"


def test_truncated_data_file_names_the_file_and_the_stage(tmp_path):
    from common.data import load_split, prepare

    out = tmp_path / "prepared"
    prepare("digits", 4, 100, 0, out)
    arrow = sorted((out / "train").glob("*.arrow"))[0]
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(UnreadableInputError) as e:
        load_split(out, "train")
    msg = str(e.value)
    assert msg.startswith(f"{arrow} is unreadable (")
    assert msg.endswith("; made by stage prepare_data: run dvc repro dvc.yaml:prepare_data)")
    assert isinstance(e.value, UserError)


def test_corrupt_classifier_files_name_the_file_and_the_stage(tmp_path):
    import torch

    from common.evaluation import load_classifier, save_classifier
    from common.models import Classifier

    w = tmp_path / "classifier"
    save_classifier(Classifier(1, [8], 8, 10), w, {"in_channels": 1, "channels": [8], "feature_dim": 8,
                                                   "num_classes": 10})
    assert isinstance(load_classifier(w), torch.nn.Module)
    weights = w / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UnreadableInputError, match=rf"^{weights} is unreadable \(.*train_classifier\)$"):
        load_classifier(w)
    weights.unlink()
    with pytest.raises(MissingInputError) as e:
        load_classifier(w)
    _assert_missing(e.value, str(weights), "train_classifier")
    (w / "config.json").write_text("{not json")
    with pytest.raises(UnreadableInputError, match=rf"^{w / 'config.json'} is unreadable \(JSONDecodeError"):
        load_classifier(w)


# --------------------------------------------------------------------------- python -m common.config --check
def test_check_passes_for_the_shipped_params_in_every_profile():
    out = io.StringIO()
    assert check([], all_profiles=True, root=REPO, out=out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert all(line.startswith("ok: ") for line in lines)
    assert "ok: papers/new_knowledge/dvc.yaml (profile=full): 3 stages" in lines


def _pipeline_copy(root):
    """The root and new_knowledge pipelines with their params under `root`: (paper params path, its data)."""
    for f in ("params.yaml", "dvc.yaml", "papers/new_knowledge/params.yaml", "papers/new_knowledge/dvc.yaml"):
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / f, root / f)
    p = root / "papers/new_knowledge/params.yaml"
    return p, yaml.safe_load(p.read_text())


def test_check_reports_every_error_once_with_the_stages(tmp_path):
    p, data = _pipeline_copy(tmp_path)
    data["slick"]["n_prompts"] = -1
    data["study"]["unknown_shares"] = [0.0, 2.0]
    p.write_text(yaml.safe_dump(data))
    out = io.StringIO()
    assert check(["papers/new_knowledge"], root=tmp_path, out=out) == 2
    assert out.getvalue().splitlines() == [
        "error: papers/new_knowledge/params.yaml: slick.n_prompts = -1 must be >= 1 "
        "[papers/new_knowledge/dvc.yaml (current profile): stages categorize, finetune, report]",
        "error: papers/new_knowledge/params.yaml: study.unknown_shares[1] = 2.0 must be in [0, 1] "
        "[papers/new_knowledge/dvc.yaml (current profile): stages categorize, finetune, report]",
    ]
    out = io.StringIO()
    assert check(["."], root=tmp_path, out=out) == 0  # the root pipeline does not read the paper's file
    n_root = len(yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"])
    assert out.getvalue() == f"ok: dvc.yaml (current profile): {n_root} stages\n"


def test_check_main_arguments(capsys):
    assert check_main(["--check", "papers/new_knowledge", "profile=tiny"]) == 0
    assert capsys.readouterr().out == "ok: papers/new_knowledge/dvc.yaml (current profile): 3 stages\n"
    assert check_main(["--check", "new_knowledge", "slick.n_prompts=0"]) == 2
    assert "slick.n_prompts = 0 must be >= 1" in capsys.readouterr().out
    assert check_main(["--check", "papers/no_such_paper"]) == 2
    assert "no pipeline papers/no_such_paper/dvc.yaml" in capsys.readouterr().err
    assert check_main(["--help"]) == 0 and "usage: python -m common.config --check" in capsys.readouterr().out


def test_check_from_the_command_line():
    proc = _python_m("common.config", "--check", "papers/new_knowledge")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok: papers/new_knowledge/dvc.yaml (current profile): 3 stages\n"


def test_a_dvc_stage_checks_every_pipeline_before_its_work(tmp_path, monkeypatch, capsys):
    """Under `dvc repro` a bad value in any paper's params stops the first stage, before it does anything."""
    p, data = _pipeline_copy(tmp_path)
    data["slick"]["n_prompts"] = -1
    p.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("DVC_STAGE", "dvc.yaml:prepare_data")
    ran = []
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: ran.append(1), argv=[])
    assert exc.value.code == 2 and not ran
    assert "slick.n_prompts = -1 must be >= 1" in capsys.readouterr().err
    data["slick"]["n_prompts"] = 3
    p.write_text(yaml.safe_dump(data))
    run_main(lambda *a: ran.append(1), argv=[])
    assert ran == [1] and len(list((tmp_path / ".dvc" / "tmp").glob("params-ok-*"))) == 1
    run_main(lambda *a: ran.append(1), argv=[])  # the same params state: the stamp skips the check
    assert ran == [1, 1]
