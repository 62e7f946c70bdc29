"""common/status.py: the status table on a tiny fake repository, and the real repository's catalog."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common import status
from common.status import REPO_ROOT, StatusError

ROOT_DVC = {"stages": {
    "prepare_data": {"cmd": "true", "outs": ["data/prepared"]},
    "train": {"cmd": "true", "deps": ["data/prepared"], "outs": ["models/m", {"runs/m": {"persist": True}}],
              "metrics": [{"metrics/m.json": {"cache": False}}]},
    "lonely": {"cmd": "true", "outs": ["data/other"]},
}}
X_DVC = {"stages": {
    "evaluate": {"wdir": "../..", "cmd": "true", "deps": ["papers/x/evaluate.py", "models/m/weights.bin"],
                 "metrics": [{"reports/x/results.json": {"cache": False}}]},
    "report": {"wdir": "../..", "cmd": "true", "deps": ["reports/x/results.json"],
               "outs": [{"reports/x/README.md": {"cache": False}}, {"reports/x/verdicts.json": {"cache": False}}]},
}}
Y_DVC = {"stages": {  # reads paper x's results (dvc.yaml-relative paths, no wdir) and the lonely stage's data
    "compare": {"cmd": "true", "deps": ["../../reports/x/results.json", "../../data/other"],
                "outs": ["../../reports/y/verdicts.json"]},
}}
X_VERDICTS = {"name": "x", "profile": "cpu", "verdicts": [
    {"id": "a", "verdict": "reproduced"}, {"id": "b", "verdict": "reproduced"},
    {"id": "c", "verdict": "not reproduced"}, {"id": "d", "verdict": "inconclusive"},
    {"id": "e", "verdict": "by design"}, {"id": "f", "verdict": "by design"}, {"id": "g", "verdict": "at ceiling"},
]}
FULL = {"status": status.CONFIGURED, "data": "CIFAR-10", "gpu_hours": "not measured"}
CATALOG = {
    "shared_stages": {"prepare_data": {"title": "data", "expected_cpu_minutes": 0.5},
                      "train": {"title": "model", "expected_cpu_minutes": 10},
                      "lonely": {"title": "other data", "expected_cpu_minutes": None}},
    "papers": {
        "x": {"title": "Paper X", "expected_cpu_minutes": 3.0, "shared_stages": ["prepare_data", "train"],
              "upstream_papers": [], "full_profile": FULL},
        "y": {"title": "Paper Y", "expected_cpu_minutes": 2.0, "shared_stages": ["prepare_data", "train", "lonely"],
              "upstream_papers": ["x"], "full_profile": {"status": status.RAISES, "data": "web pool"}},
    },
}


def _write(path: Path, doc, as_json=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) if as_json else yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture
def repo(tmp_path):
    _write(tmp_path / "dvc.yaml", ROOT_DVC)
    _write(tmp_path / "papers/x/dvc.yaml", X_DVC)
    _write(tmp_path / "papers/y/dvc.yaml", Y_DVC)
    _write(tmp_path / "reports/x/verdicts.json", X_VERDICTS, as_json=True)
    (tmp_path / "reports/x/README.md").write_text("# X\n")
    _write(tmp_path / "papers/catalog.yaml", CATALOG)
    return tmp_path


def _rows(s):
    return {r.name: r for r in s["rows"]}


def test_counts_exclude_design_facts_and_ceiling_flags(repo):
    s = status.build(repo, dvc=False)
    x = _rows(s)["x"]
    assert x.counts == {"reproduced": 2, "not reproduced": 1, "inconclusive": 1, "by design": 2, "at ceiling": 1}
    assert sum(x.counts[k] for k in status.COUNTED) == 4  # 7 claims, 3 of them apart
    assert _rows(s)["y"].counts is None                  # no verdicts.json yet
    assert s["totals"]["counts"]["reproduced"] == 2 and s["totals"]["counts"]["by design"] == 2
    assert s["warnings"] == []


def test_table_rows_in_every_format(repo):
    s = status.build(repo, dvc=False)
    md = status.to_markdown(s)
    assert "| [x](papers/x) | 2 | 1 | 1 | 2 | 1 | not checked | 3.0 | prepare_data, train (10.5 min) | 13.5 |" in md
    assert "[report](reports/x/README.md)" in md
    assert "| [y](papers/y) | no report yet |" in md
    assert "| `train` (shared) | – |" in md
    assert len({line.count("|") for line in md.splitlines()}) == 1  # every row has every column
    text = status.to_text(s)
    assert text.splitlines()[0].startswith("paper / stage") and "no report yet" in text
    rows = json.loads(status.to_json(s))["rows"]
    assert rows[0]["name"] == "x" and rows[0]["counts"]["by design"] == 2


def test_minutes_shared_stages_and_upstream_papers(repo):
    r = _rows(status.build(repo, dvc=False))
    assert r["x"].shared_minutes == 10.5 and r["x"].from_scratch_minutes == 13.5
    # y pulls in x's stages (and through them prepare_data, train) and the lonely stage, which is not measured
    assert r["y"].upstream_papers == ["x"] and r["y"].shared_minutes is None and r["y"].from_scratch_minutes is None
    assert "not measured" in status.to_markdown(status.build(repo, dvc=False))
    assert r["train"].kind == "shared" and r["train"].shared_stages == ["prepare_data"]
    assert r["train"].from_scratch_minutes == 10.5


def test_shared_stages_are_derived_transitively_from_the_dvc_files(repo):
    stages = status.load_stages(repo)
    assert set(stages) == {"prepare_data", "train", "lonely", "papers/x/dvc.yaml:evaluate",
                           "papers/x/dvc.yaml:report", "papers/y/dvc.yaml:compare"}
    assert stages["papers/y/dvc.yaml:compare"].deps == ["reports/x/results.json", "data/other"]
    g = status.upstream_graph(stages)
    assert g["papers/x/dvc.yaml:evaluate"] == {"train"}  # a file inside the stage's output folder
    x, y = status.pulls(stages, g, "x"), status.pulls(stages, g, "y")
    assert x.shared_stages == ["prepare_data", "train"] and x.upstream_papers == []
    assert y.shared_stages == ["prepare_data", "train", "lonely"] and y.upstream_papers == ["x"]


def test_catalog_disagreeing_with_dvc_files_is_a_warning(repo):
    cat = yaml.safe_load((repo / "papers/catalog.yaml").read_text())
    cat["papers"]["y"]["shared_stages"] = ["lonely"]
    _write(repo / "papers/catalog.yaml", cat)
    (w,) = status.build(repo, dvc=False)["warnings"]
    assert "paper 'y'" in w and "shared_stages" in w and "'prepare_data', 'train', 'lonely'" in w


def test_missing_catalog_entry_names_the_paper(repo, capsys):
    cat = yaml.safe_load((repo / "papers/catalog.yaml").read_text())
    del cat["papers"]["y"]
    _write(repo / "papers/catalog.yaml", cat)
    with pytest.raises(StatusError, match=r"no entry for paper 'y' \(papers/y/dvc.yaml exists\)"):
        status.build(repo, dvc=False)
    assert status.main(["--root", str(repo), "--no-dvc"]) == 2
    err = capsys.readouterr().err
    assert "paper 'y'" in err and "papers/catalog.yaml" in err


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["papers"].__setitem__("z", c["papers"]["x"]), "lists paper 'z' with no papers/<name>/dvc.yaml"),
    (lambda c: c["shared_stages"].pop("lonely"), "no entry for root dvc.yaml stage 'lonely'"),
    (lambda c: c["papers"]["x"].pop("full_profile"), r"paper 'x': missing key\(s\) \['full_profile'\]"),
    (lambda c: c["papers"]["x"].__setitem__("expected_cpu_minutes", "ten"), "paper 'x': expected_cpu_minutes"),
    (lambda c: c["papers"]["x"].__setitem__("shared_stages", ["nope"]), "paper 'x': shared_stages"),
    (lambda c: c["papers"]["x"]["full_profile"].__setitem__("status", "maybe"), "paper 'x': full_profile"),
])
def test_malformed_catalog_fails_clearly(repo, edit, match):
    cat = yaml.safe_load((repo / "papers/catalog.yaml").read_text())
    edit(cat)
    _write(repo / "papers/catalog.yaml", cat)
    with pytest.raises(StatusError, match=match):
        status.build(repo, dvc=False)


def test_unknown_label_names_the_file(repo):
    doc = dict(X_VERDICTS, verdicts=[{"id": "a", "verdict": "partly"}])
    _write(repo / "reports/x/verdicts.json", doc, as_json=True)
    with pytest.raises(StatusError, match=r"reports/x/verdicts.json: verdict 0 \(id a\) has label 'partly'"):
        status.build(repo, dvc=False)


def test_dvc_status_maps_to_papers_and_upstream(repo):
    changed = {"train": [{"changed deps": {"data/prepared": "modified"}}],
               "papers/x/dvc.yaml:report": [{"changed outs": {"reports/x/README.md": "deleted"}}]}
    s = status.build(repo, changed=changed)
    r = _rows(s)
    assert r["x"].dvc["stale_own"] == ["report"] and r["x"].dvc["stale_upstream"] == ["train"]
    assert status.freshness_text(r["x"].dvc) == "no: 1/2 own (outs); 1/2 upstream stale"
    # y reads x's results.json (x's evaluate), so x's stale report stage does not make y stale
    assert r["y"].dvc["stale_own"] == [] and r["y"].dvc["stale_upstream"] == ["train"]
    assert r["lonely"].dvc["up_to_date"] and status.freshness_text(r["lonely"].dvc) == "yes"
    assert r["prepare_data"].dvc["up_to_date"] and not r["train"].dvc["up_to_date"]
    assert s["totals"]["up_to_date"] == 0


def test_one_real_dvc_status_call(repo, capsys):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    assert status.main(["--root", str(repo), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dvc_checked"] and out["dvc_error"] is None
    rows = {r["name"]: r for r in out["rows"]}
    assert not rows["x"]["dvc"]["up_to_date"]  # nothing has run in the fake repository
    assert rows["x"]["dvc"]["stale_own"] == ["evaluate", "report"]


# ---- the real repository ----------------------------------------------------------------------

def test_real_catalog_covers_every_paper_and_agrees_with_the_dvc_files():
    papers = sorted(f.parent.name for f in REPO_ROOT.glob("papers/*/dvc.yaml"))
    assert papers, "no papers/*/dvc.yaml found"
    s = status.build(REPO_ROOT, dvc=False)  # raises StatusError naming any paper without an entry
    assert sorted(r.name for r in s["rows"] if r.kind == "paper") == papers
    assert s["warnings"] == [], "\n".join(s["warnings"])
    for r in s["rows"]:
        assert r.cpu_minutes is not None, f"{r.name}: expected_cpu_minutes not measured"
        if r.kind == "paper":
            assert r.full_profile_detail["gpu_hours"], f"{r.name}: say 'not measured' rather than nothing"
