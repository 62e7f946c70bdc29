"""Scaling (Down) CLIP (Li et al., 2024; no official code): reference checks derived here from the paper
(Top x% selection of Sec. 3.2: descending, a fixed tie rule of ours, sizes; the compute axis of Sec. 2:
GFLOPs/sample x samples seen), the quality
score against the shared CLIP's pair scores, the FLOPs matching of the two towers, config errors, and the
tiny pipeline (build_scenes -> train_scene_clip -> experiment -> report) in a temporary copy."""

import json

import numpy as np
import pytest
from tinyrepo import inside, make_tiny_repo

from common.claims import LABELS
from papers.scaling_down_clip.method import (
    epochs,
    flops_matched,
    gap,
    interior_optimum,
    nested_subsets,
    quality_score,
    top_x_subset,
    training_compute,
)


# --------------------------------------------------------------------------- Top x% (Sec. 3.2)
def test_top_x_keeps_the_highest_scores_in_descending_order():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.0])
    assert top_x_subset(scores, 30).tolist() == [1, 3, 5]  # 0.9, 0.8, 0.7
    assert top_x_subset(scores, 50).tolist() == [1, 2, 3, 5, 7]
    assert top_x_subset(scores, 100).tolist() == list(range(10))
    kept = top_x_subset(scores, 40)
    assert scores[kept].min() > np.delete(scores, kept).max()  # every kept pair beats every dropped one


def test_top_x_tie_rule_is_lower_index_first_and_sizes_are_exact():
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1, 0.5])  # four-way tie at the cut
    assert top_x_subset(scores, 50).tolist() == [0, 1, 2]  # 0.9, then the tied 0.5s by index: 0, 2
    assert top_x_subset(scores[::-1].copy(), 50).tolist() == [0, 2, 4]  # reversed pool: 0.5@0, 0.5@2 (0.9@4)
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, size=1001).astype(np.float32)  # many ties
    for pct in (10, 20, 40, 60, 80, 100):
        idx = top_x_subset(s, pct)
        assert len(idx) == int(round(pct / 100 * 1001))  # exactly round(x N), ties never add pairs
        assert np.all(np.diff(idx) > 0)  # sorted, no duplicates
    # the kept set is the lexicographic prefix of (score desc, index asc): compare with a plain sort
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    assert top_x_subset(s, 40).tolist() == sorted(order[:400])


def test_top_x_subsets_are_nested_and_validate_x():
    s = np.random.default_rng(1).normal(size=500)
    sets = [set(top_x_subset(s, p).tolist()) for p in (10, 20, 40, 70, 100)]
    assert all(a <= b for a, b in zip(sets, sets[1:]))
    for bad in (0, -5, 101):
        with pytest.raises(ValueError, match="top_pct"):
            top_x_subset(s, bad)
    with pytest.raises(ValueError, match="finite"):
        top_x_subset(np.array([0.1, np.nan]), 50)
    with pytest.raises(ValueError, match="keeps no pair"):
        top_x_subset(np.arange(10.0), 1)


def test_quality_score_is_cosine_and_scale_free():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0]])
    assert quality_score(a, b) == pytest.approx([1.0, -1.0, 0.0])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    assert quality_score(3 * x, 0.5 * y) == pytest.approx(quality_score(x, y))
    with pytest.raises(ValueError):
        quality_score(x, y[:5])


def test_quality_score_matches_the_shared_pair_scores():
    """The teacher's pool_scores.npy come from common.clip.pair_scores: the same quantity as (quality score)."""
    import torch

    from common.clip import build_clip, build_tokenizer, encode_images, encode_texts, pair_scores
    from common.config import ClipModelConfig
    from common.scenes import Scenes, vocabulary_texts

    tok = build_tokenizer()
    spec = ClipModelConfig(cnn_widths=[4, 8], embed_dim=8, image_tower="cnn", text_width=8, text_layers=1, text_heads=2,
                           context_length=32)
    model = build_clip(spec, tok, seed=0)
    n = 6
    caps = vocabulary_texts()[:n]
    imgs = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sc = Scenes(imgs, caps, caps, np.array(["clean"] * n), np.zeros(n, int), np.ones(n, int), [[0]] * n, [["red"]] * n)
    ref = pair_scores(model, tok, sc, spec.context_length).numpy()
    ours = quality_score(encode_images(model, imgs, normalize=False).numpy(),
                         encode_texts(model, tok, caps, spec.context_length).numpy())
    assert ours == pytest.approx(ref, abs=1e-5)


# --------------------------------------------------------------------------- compute (Sec. 2)
def test_compute_is_gflops_per_sample_times_samples():
    assert training_compute(4.4, 1_000_000) == pytest.approx(4.4e6)  # ViT-B/32, 1M samples seen
    assert training_compute(0.039, 24_000) == pytest.approx(936.0)
    assert training_compute(4.1, 0) == 0.0
    with pytest.raises(ValueError):
        training_compute(0.0, 10)
    assert epochs(24_000, 3_000) == 8.0 and epochs(24_000, 30_000) == 0.8


def test_flops_per_sample_counts_a_linear_layer_exactly():
    """common.clip.flops_per_sample on a known layer: forward 2*B*in*out, backward 2x that (input + weight grads)."""
    import torch

    from common.clip import flops_per_sample

    lin = torch.nn.Linear(16, 4, bias=False)
    x = torch.randn(8, 16, requires_grad=True)
    f = flops_per_sample(lambda: lin(x).sum(), 8)
    assert f == pytest.approx(3 * 2 * 16 * 4)


def test_flops_matching_rule():
    assert flops_matched(4.4, 4.1, 1.2) and flops_matched(4.1, 4.4, 1.2)  # ViT-B/32 vs ResNet-50
    assert not flops_matched(8.8, 4.1, 1.2) and not flops_matched(2.0, 4.1, 1.2)


def test_cpu_towers_have_matched_flops_and_the_vit_more_parameters():
    from common.clip import build_tokenizer
    from common.config import load_config
    from papers.scaling_down_clip.config import ScalingDownClipConfig
    from papers.scaling_down_clip.experiment import measure_flops, vit_spec

    cfg = load_config(ScalingDownClipConfig, paper="scaling_down_clip", overrides=["profile=cpu"])
    tok = build_tokenizer()
    c, v = measure_flops(cfg.model, tok), measure_flops(vit_spec(cfg), tok)
    ratio = v["image_gflops_per_sample"] / c["image_gflops_per_sample"]
    assert 1 / cfg.architecture.max_flops_ratio <= ratio <= cfg.architecture.max_flops_ratio
    assert abs(ratio - 1) < 0.15 and v["image_params"] > 2 * c["image_params"]
    # the ViT tower is open_clip's VisionTransformer, the CNN the shared SmallCNN
    from open_clip.transformer import VisionTransformer

    from common.clip import SmallCNN, build_clip

    assert isinstance(build_clip(vit_spec(cfg), tok, 0).visual, VisionTransformer)
    assert isinstance(build_clip(cfg.model, tok, 0).visual, SmallCNN)


# --------------------------------------------------------------------------- data-size axis, claims helpers
def test_nested_subsets():
    subs = nested_subsets(100, [10, 30, 100], seed=3)
    assert [len(subs[n]) for n in (10, 30, 100)] == [10, 30, 100]
    assert set(subs[10]) <= set(subs[30]) <= set(subs[100]) and subs[100].tolist() == list(range(100))
    assert subs[30].tolist() == nested_subsets(100, [30], seed=3)[30].tolist()
    assert subs[30].tolist() != nested_subsets(100, [30], seed=4)[30].tolist()
    with pytest.raises(ValueError, match="architecture.sizes"):
        nested_subsets(100, [10, 101], seed=0)


def test_interior_optimum_and_gap():
    assert interior_optimum([10, 20, 40, 70, 100], [0.5, 0.4, 0.3, 0.35, 0.45]) == {"argmin": 40.0, "interior": True}
    assert interior_optimum([10, 40, 100], [0.5, 0.4, 0.3])["interior"] is False
    assert gap([0.5, 0.6], [0.4, 0.7]) == pytest.approx([0.1, -0.1])


def test_u_shape_claim_on_planted_curves():
    """The claim kind the report uses: an interior minimum of the error is reproduced, a monotone one is not."""
    from common.claims import evaluate_claims

    claim = {"id": "u", "source": "s", "paper": {}, "test": {"kind": "u_shape", "metric": "zero_shot_error",
                                                             "param": "top_pct", "where": {"stage": "quality"}}}
    u = [0.5, 0.4, 0.3, 0.35, 0.45]
    rows = [{"stage": "quality", "seed": s, "top_pct": x, "zero_shot_error": e + 0.01 * s}
            for s in (0, 1, 2) for x, e in zip([10, 20, 40, 70, 100], u)]
    assert evaluate_claims([claim], rows)[0].verdict == "reproduced"
    rows = [{**r, "zero_shot_error": r["top_pct"] / 100} for r in rows]
    assert evaluate_claims([claim], rows)[0].verdict == "not reproduced"


# --------------------------------------------------------------------------- config errors
def test_bad_parameter_names_key_and_file(tmp_path):
    from common.config import ConfigError, load_config
    from papers.scaling_down_clip.config import ScalingDownClipConfig

    with pytest.raises(ConfigError, match="quality"):
        load_config(ScalingDownClipConfig, paper="scaling_down_clip", overrides=["quality.top_pcts=[1]"])


def test_full_profile_names_the_missing_data(monkeypatch):
    from common.data import MissingDataError
    from papers.scaling_down_clip import experiment

    with pytest.raises(MissingDataError, match="WebLI"):
        experiment.main(["profile=full"])


# --------------------------------------------------------------------------- the tiny pipeline
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """build_scenes -> train_scene_clip -> experiment -> report, in process, on the tiny profile."""
    root = make_tiny_repo(tmp_path_factory.mktemp("scaling_down_clip"))
    with inside(root):
        from common.stages import build_scenes, train_scene_clip
        from papers.scaling_down_clip import experiment, report

        for stage in (build_scenes, train_scene_clip, experiment, report):
            stage.main([])
    return root


def test_tiny_pipeline_outputs(tiny):
    out = tiny / "reports" / "scaling_down_clip"
    res = json.loads((out / "results.json").read_text())
    runs = res["runs"]
    assert len(runs) == 3 * 3 + 2 * 2 * 3  # tiny: Top 20/40/100% x 3 seeds + 2 sizes x 2 towers x 3 seeds
    assert {r["samples_seen"] for r in runs} == {640}  # equal samples seen everywhere
    pool = res["pool_size"]
    scores = np.load(tiny / "models" / "scene_clip" / "pool_scores.npy")
    for pct, s in res["subsets"].items():
        assert s["n_train"] == int(round(float(pct) / 100 * pool))
        assert s["epochs"] == pytest.approx(640 / s["n_train"])
        kept = top_x_subset(scores, float(pct))
        assert s["min_score"] == pytest.approx(float(scores[kept].min()))
    assert res["subsets"]["100"]["clean_share"] == pytest.approx(0.4, abs=0.01)  # the pool's clean share
    for r in runs:
        g = res["flops"][r.get("tower", "cnn")]["gflops_per_sample"]
        assert r["compute_gflops"] == pytest.approx(g * r["samples_seen"])
    assert {r["n_train"] for r in runs if r["stage"] == "architecture"} == {50, 200}
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["quality-interior-optimum", "top40-beats-all-data",
                                           "cnn-beats-vit-small-data", "cnn-advantage-shrinks-with-data"]
    assert all(v["n_units"] == 3 and v["verdict"] in LABELS for v in verdicts)  # 3 seeds: docs/verdicts.md
    for fig in ("quality_vs_quantity.png", "cnn_vs_vit_vs_data.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    readme = (out / "README.md").read_text()
    assert "Top 40%" in readme and "CNN-based architecture or a ViT-based architecture" in readme


def test_tiny_experiment_is_cached_and_deterministic(tiny):
    """A rerun reads every finished CLIP back (same fingerprints) and rewrites identical numbers."""
    out = tiny / "reports" / "scaling_down_clip" / "results.json"
    before = json.loads(out.read_text())
    with inside(tiny):
        from papers.scaling_down_clip import experiment

        experiment.main([])
    after = json.loads(out.read_text())
    assert after["rows"] == before["rows"]
    assert [r["train_seconds"] for r in after["runs"]] == [r["train_seconds"] for r in before["runs"]]
