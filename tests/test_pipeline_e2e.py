"""End to end: `dvc repro papers/epsilon_scaling/dvc.yaml` on the tiny profile in a temporary copy.

Asserts on what the pipeline wrote: the shared stages' outputs, the report and its verdicts,
the index, the DVC lock files, and the MLflow runs; then that a second `dvc repro` is a no-op.
"""

import json
import subprocess
import sys

import pytest
from tinyrepo import env_for, make_tiny_repo

from common.claims import LABELS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    root = make_tiny_repo(tmp_path_factory.mktemp("e2e"), git=True)
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/epsilon_scaling/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return root, proc


def test_stages_ran_in_order(repro):
    root, proc = repro
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    # DVC orders independent stages as it likes (train_classifier and train_base_model only need the data)
    assert order[0] == "prepare_data" and sorted(order[1:3]) == ["train_base_model", "train_classifier"]
    assert order[3:] == ["evaluate_base_model", "papers/epsilon_scaling/dvc.yaml:evaluate",
                         "papers/epsilon_scaling/dvc.yaml:report"]
    assert (root / "dvc.lock").is_file() and (root / "papers/epsilon_scaling/dvc.lock").is_file()


def test_report_and_verdicts(repro):
    root, _ = repro
    report = (root / "reports/epsilon_scaling/README.md").read_text()
    verdicts = json.loads((root / "reports/epsilon_scaling/verdicts.json").read_text())
    ids = [v["id"] for v in verdicts["verdicts"]]
    assert ids == ["es-lowers-fid-nfe10", "es-lowers-fid-nfe20", "es-lowers-fid-nfe50", "es-linear-lowers-fid-nfe20",
                   "fid-vs-b-u-shaped"]
    for v in verdicts["verdicts"]:
        assert v["verdict"] in LABELS
        assert v["n_units"] == 3
        assert v["id"] in report
    assert verdicts["profile"] == "tiny"
    for fig in ("fid_vs_nfe.png", "fid_vs_b.png", "samples_nfe10.png"):
        assert (root / "reports/epsilon_scaling/figures" / fig).stat().st_size > 1000
    assert "fid[digits-classifier]" in report  # the metric names its backbone
    results = json.loads((root / "reports/epsilon_scaling/results.json").read_text())
    assert results["b_star"] in (1.0, 1.02, 1.05)
    assert len([r for r in results["rows"] if r["stage"] == "sweep"]) == 3 * 3
    index = (root / "reports/README.md").read_text()
    assert "[epsilon_scaling](epsilon_scaling/README.md)" in index and "[base_model](base_model/README.md)" in index
    # provenance: the commit and input hashes (the tiny profile may run on a dirty tree), the environment
    prov = verdicts["provenance"]
    assert len(prov["commit"].split("-")[0]) == 40 and "reports/epsilon_scaling/results.json" in prov["inputs"]
    assert prov["environment"]["packages"]["torch"] and prov["environment"]["cpu_model"]
    assert "docs/verdicts.md" in report and "adjusted CI (Holm)" in report
    # one small DVC metrics file per paper: verdict counts and headline numbers
    summary = json.loads((root / "reports/epsilon_scaling/summary.json").read_text())
    assert sum(summary["verdicts"].values()) == len(ids) and summary["headline"]["b_star"] == results["b_star"]


def test_mlflow_runs(repro):
    root, _ = repro
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("epsilon_scaling")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    (run,) = [r for r in runs if r.info.run_name == "report"]
    assert run.data.tags["profile"] == "tiny" and run.data.tags["dvc_stage"].endswith("report")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development" and "mlflow.note.content" in exp.tags
    # every results row is a child run of "results", with the same metric keys on both arms
    (parent,) = [r for r in runs if r.info.run_name == "results"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    results = json.loads((root / "reports/epsilon_scaling/results.json").read_text())
    assert len(children) == len(results["rows"])
    by_arm = {}
    for c in children:
        if c.data.params.get("stage") == "compare":
            by_arm.setdefault(c.data.params["arm"], set()).add(frozenset(c.data.metrics))
    assert set(by_arm) == {"baseline", "method"} and by_arm["baseline"] == by_arm["method"]
    assert len(run.data.tags["git_sha"]) >= 40
    assert len(run.data.tags["packages_digest"]) == 12 and run.data.tags["cpu"]  # the environment of every run
    assert run.data.metrics["b_star"] == results["b_star"]  # MLflow gets the same numbers as the DVC JSON
    arts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "README.md" in arts and "figures" in arts
    shared = client.get_experiment_by_name("shared")
    names = {r.info.run_name for r in client.search_runs([shared.experiment_id])}
    assert names == {"train_classifier", "train_base_model", "evaluate_base_model"}


def test_second_repro_is_a_noop(repro):
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/epsilon_scaling/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert "Running stage" not in proc.stdout


def test_second_paper_reuses_the_shared_stages(repro):
    """`dvc repro papers/time_shift/dvc.yaml` after the first paper: only its own stages run."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/time_shift/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert order == ["papers/time_shift/dvc.yaml:evaluate", "papers/time_shift/dvc.yaml:report"]
    verdicts = json.loads((root / "reports/time_shift/verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["ts-ddim-lowers-fid-nfe5", "ts-ddim-lowers-fid-nfe10",
                                           "ts-ddpm-lowers-fid-nfe10", "ts-small-overhead"]
    assert all(v["n_units"] == 3 for v in verdicts)
    assert "[time_shift](time_shift/README.md)" in (root / "reports/README.md").read_text()


def test_comparison_page_pulls_in_its_papers(repro):
    """`dvc repro papers/exposure_bias/dvc.yaml` after ES and TS: DDPM-IP's training and evaluation run
    (its rows and models are inputs), ES and TS are reused, and the page joins the index."""
    root, _ = repro
    subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/time_shift/dvc.yaml"], cwd=root,
                   env=env_for(root), capture_output=True, text=True, timeout=600, check=True)
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/exposure_bias/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert order == ["papers/ddpm_ip/dvc.yaml:train", "papers/ddpm_ip/dvc.yaml:evaluate",
                     "papers/exposure_bias/dvc.yaml:evaluate", "papers/exposure_bias/dvc.yaml:report"]
    res = json.loads((root / "reports/exposure_bias/results.json").read_text())
    arms = {r["arm"] for r in res["rows"]}
    assert arms == {"none", "IP", "ES", "TS", "IP+ES", "IP+TS"}
    es = json.loads((root / "reports/epsilon_scaling/results.json").read_text())
    assert res["es_b"] == es["b_star"]  # each fix runs at the setting its own paper selected
    page = (root / "reports/exposure_bias/README.md").read_text()
    assert "| IP+ES |" in page and (root / "reports/exposure_bias/figures/fid_vs_nfe.png").stat().st_size > 1000
    assert "[exposure_bias](exposure_bias/README.md)" in (root / "reports/README.md").read_text()


GROUP_A_SAMPLING = {  # paper -> (its stages in order, number of claims); each on the cached shared stages
    "cads": (["evaluate", "report"], 11),
    "cdr_pareto": (["evaluate", "report"], 7),
    "residual_correction": (["simulate", "train", "evaluate", "report"], 6),
    "align_your_steps": (["evaluate", "report"], 9),
    "sing_diffusion": (["train", "evaluate", "report"], 12),
}


@pytest.mark.parametrize("paper", sorted(GROUP_A_SAMPLING))
def test_sampling_papers_run_on_the_cached_base_model(repro, paper):
    """Each issue-4 paper: only its own stages run, every claim gets a verdict over 3 seeds, index row."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", f"papers/{paper}/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    stages, n_claims = GROUP_A_SAMPLING[paper]
    assert order == [f"papers/{paper}/dvc.yaml:{s}" for s in stages]
    verdicts = json.loads((root / f"reports/{paper}/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == n_claims
    assert all(v["verdict"] in LABELS for v in verdicts)
    assert all(v["n_units"] == 3 for v in verdicts if not v["id"].startswith("rc-correction-few"))
    assert f"[{paper}]({paper}/README.md)" in (root / "reports/README.md").read_text()
