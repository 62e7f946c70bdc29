"""End to end, the pipelines that need none of the diffusion stages: the knowledge / language-model paper and the
data papers on the captioned scenes, each `dvc repro` on the tiny profile in one temporary copy.

Split from tests/test_pipeline_e2e.py so that pytest-xdist (`--dist loadfile`) can run the two halves on two
workers: these stages share nothing with the diffusion pipeline of that file's fixture.
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
    """A tiny copy (git + DVC initialised) in which nothing has run yet."""
    return make_tiny_repo(tmp_path_factory.mktemp("e2e_data"), git=True), None


def test_new_knowledge_pulls_in_the_language_model_stages(repro):
    """`dvc repro papers/new_knowledge/dvc.yaml`: builds the knowledge base and pretrains the LM (shared
    stages), then SliCK categories, fine-tuning and the report; the diffusion stages are not touched."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/new_knowledge/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert order == ["build_knowledge", "pretrain_lm", "papers/new_knowledge/dvc.yaml:categorize",
                     "papers/new_knowledge/dvc.yaml:finetune", "papers/new_knowledge/dvc.yaml:report"]
    verdicts = json.loads((root / "reports/new_knowledge/verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["unknown-fitted-slower", "unknown-hurts-at-convergence",
                                           "early-stop-mitigates", "linear-model-beta-unk-negative",
                                           "linear-model-beta-kn-positive"]
    assert all(v["n_units"] == 3 for v in verdicts)
    assert "[new_knowledge](new_knowledge/README.md)" in (root / "reports/README.md").read_text()


def _paper_stages(root, paper):
    import yaml

    return list(yaml.safe_load((root / f"papers/{paper}/dvc.yaml").read_text())["stages"])


def _check_data_paper(root, paper, proc, shared=(), upstream=()):
    """`upstream`: prefixes of stages that may run before the paper's own (its upstream papers', run alone)."""
    import yaml

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    order = [s for s in order if not s.startswith(tuple(upstream))] if upstream else order
    assert order == list(shared) + [f"papers/{paper}/dvc.yaml:{s}" for s in _paper_stages(root, paper)]
    claims = yaml.safe_load((root / f"papers/{paper}/claims.yaml").read_text())
    verdicts = json.loads((root / f"reports/{paper}/verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == [c["id"] for c in claims]
    assert all(v["verdict"] in LABELS for v in verdicts)
    assert all(v["n_units"] >= 1 for v in verdicts)  # tiny profiles use 1-2 seeds; cpu 2-3
    assert f"[{paper}]({paper}/README.md)" in (root / "reports/README.md").read_text()
    assert list((root / f"reports/{paper}/figures").glob("*.png"))


DATA_PAPERS = ["scaling_down_clip", "catlip", "dfn", "ssl_data_curation"]


def test_data_paper_pulls_in_the_scene_stages(repro):
    """`dvc repro papers/qqt_data_filtering/dvc.yaml`: builds the captioned scenes and the shared CLIP
    (root stages), then the paper's stages; the diffusion and language-model stages are not touched."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/qqt_data_filtering/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=900)
    _check_data_paper(root, "qqt_data_filtering", proc, shared=["build_scenes", "train_scene_clip"])
    scores = json.loads((root / "metrics/scene_clip.json").read_text())
    assert 0.0 <= scores["zero_shot_colour"] <= 1.0 and "auc_clean_vs_unrelated" in scores


@pytest.mark.parametrize("paper", DATA_PAPERS)
def test_data_papers_run_on_the_cached_scenes(repro, paper):
    """Each other data paper: only its own stages run (the scenes and the shared CLIP are cached)."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", f"papers/{paper}/dvc.yaml"], cwd=root,
                          env=env_for(root), capture_output=True, text=True, timeout=900)
    _check_data_paper(root, paper, proc)


def test_data_curation_comparison_reuses_the_data_papers(repro):
    """`dvc repro papers/data_curation_comparison/dvc.yaml` after the five data papers: only the page's stages run
    (their students, filter scores, fitted laws and curated subsets are inputs), papers/dfn's students are reused,
    every selector is trained at every kept fraction, each claim gets a verdict, and the page joins the index."""
    root, _ = repro
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "papers/data_curation_comparison/dvc.yaml"],
                          cwd=root, env=env_for(root), capture_output=True, text=True, timeout=900)
    # after the tests above only the page's stages run; run alone (-k), its upstream papers' stages run first
    _check_data_paper(root, "data_curation_comparison", proc,
                      upstream=("build_scenes", "train_scene_clip", "papers/dfn/", "papers/qqt_data_filtering/",
                                "papers/ssl_data_curation/"))
    res = json.loads((root / "reports/data_curation_comparison/results.json").read_text())
    arms = {(r["arm"], r["fraction"]) for r in res["rows"]}
    assert {(a, f) for a in ("random", "topx", "dfn", "kmeans") for f in res["fractions"]} <= arms
    assert {r["source"] for r in res["rows"] if r["arm"] == "full"} == {"dfn"}  # papers/dfn's unfiltered students
