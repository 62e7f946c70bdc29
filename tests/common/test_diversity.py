"""common/diversity.py: PRDC (Naeem et al. 2020) and within-class pairwise distance on known point sets."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import common.diversity as diversity
from common.diversity import conditional_prdc, diversity_metrics, knn_radii, pairwise_distance, prdc, score_diversity


def _clusters(n_per, centers, spread=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.as_tensor(centers, dtype=torch.float64)
    x = torch.cat([c + spread * torch.randn(n_per, centers.shape[1], generator=g, dtype=torch.float64)
                   for c in centers])
    y = torch.arange(len(centers)).repeat_interleave(n_per)
    return x, y


def test_knn_radii_hand_computed():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    # neighbours of 0: 1, 3, 7 ; of 1: 0, 3, 7 ; of 3: 1, 0, 7 ; of 7: 3, 1, 0
    assert knn_radii(x, 1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(x, 2).tolist() == [3.0, 2.0, 3.0, 6.0]


def test_prdc_hand_computed_1d():
    """k = 1. X = {0, 1, 3}: r(0)=1, r(1)=1, r(3)=2.  Y = {0.5, 2.5, 10}: r(0.5)=2, r(2.5)=2, r(10)=7.5.
    precision: 0.5 is inside B(0,1); 2.5 inside B(3,2); 10 in no ball              -> 2/3
    recall:    every real point lies within 2 of 0.5 or 2.5                          -> 1
    density:   0.5 lies in B(0,1) and B(1,1); 2.5 in B(3,2); 10 in none: 3 / (1*3)  -> 1
    coverage:  nearest fake of 0, 1, 3 is at 0.5 < r                                 -> 1
    """
    x = torch.tensor([[0.0], [1.0], [3.0]])
    y = torch.tensor([[0.5], [2.5], [10.0]])
    assert prdc(x, y, k=1) == pytest.approx({"precision": 2 / 3, "recall": 1.0, "density": 1.0, "coverage": 1.0})


def test_prdc_balls_are_open():
    """A fake point exactly at distance r_k(X_i) is outside X_i's ball (strict '<', as in `prdc`).
    X = {0, 1, 3} (radii 1, 1, 2), Y = {-1, 5}: d(-1, 0) = 1 = r(0), d(5, 3) = 2 = r(3)."""
    x = torch.tensor([[0.0], [1.0], [3.0]])
    y = torch.tensor([[-1.0], [5.0]])
    m = prdc(x, y, k=1)
    assert m["precision"] == 0.0 and m["density"] == 0.0 and m["coverage"] == 0.0
    assert m["recall"] == 1.0  # r(-1) = r(5) = 6 covers every real point


def test_identical_sets():
    """Y = X: every point is in its own ball; without ties each ball holds itself + k-1 others, so density = 1."""
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert prdc(x, x.clone(), k=5) == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0,
                                                     "coverage": 1.0}, abs=1e-12)


def test_disjoint_far_apart_sets():
    x, _ = _clusters(100, [[0.0, 0.0]])
    y, _ = _clusters(100, [[100.0, 0.0]], seed=1)
    assert prdc(x, y) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_mode_collapse_keeps_precision_loses_recall_and_coverage():
    """Real: 10 well-separated clusters of 100; fake: the real rows of one cluster (a collapsed, realistic set).
    Every fake point is a real point (precision 1); each real ball inside that cluster holds exactly k points,
    all of them fake (density 1); only that cluster's 100 real points are recalled and covered (0.1)."""
    centers = 10.0 * torch.eye(10)
    real, labels = _clusters(100, centers, seed=0)
    fake = real[labels == 0]
    assert prdc(real, fake, k=5) == pytest.approx({"precision": 1.0, "recall": 0.1, "density": 1.0,
                                                   "coverage": 0.1}, abs=1e-12)
    # fresh samples from the one mode: still mostly realistic, still one mode's worth of recall/coverage
    m = prdc(real, _clusters(100, centers[:1], seed=1)[0], k=5)
    assert m["precision"] > 0.8 and m["recall"] <= 0.1 + 1e-12 and m["coverage"] <= 0.1 + 1e-12


def test_matches_prdc_package():
    """Numbers of clovaai's reference implementation (`pip install prdc`), to float precision."""
    ref = pytest.importorskip("prdc")
    rng = np.random.default_rng(0)
    for n, m, d, k in [(200, 200, 16, 3), (300, 150, 8, 5)]:
        x = rng.normal(size=(n, d)).astype(np.float32)
        y = (1.2 * rng.normal(size=(m, d)) + 0.3).astype(np.float32)
        want = ref.compute_prdc(x, y, k)
        assert prdc(torch.from_numpy(x), torch.from_numpy(y), k) == pytest.approx(
            {key: float(v) for key, v in want.items()}, rel=1e-12)


def test_published_values_without_the_package():
    """The case above (N=M=200, d=16, k=3, seed 0) scored by `prdc` 0.2 offline, pinned here."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)).astype(np.float32)
    y = (1.2 * rng.normal(size=(200, 16)) + 0.3).astype(np.float32)
    assert prdc(torch.from_numpy(x), torch.from_numpy(y), 3) == pytest.approx(
        {"precision": 0.425, "recall": 0.905, "density": 0.32166666666666666, "coverage": 0.47}, rel=1e-12)


def test_block_size_does_not_change_results(monkeypatch):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(70, 5, generator=g), torch.randn(50, 5, generator=g) + 0.5
    whole = prdc(x, y, 4)
    monkeypatch.setattr(diversity, "BLOCK", 16)
    assert prdc(x, y, 4) == whole
    assert prdc(x, y, 4, real_radii=knn_radii(x, 4)) == whole


def test_pairwise_distance_simplex_and_grid():
    """Class 0: the vertices e1, e2, e3 of a simplex, all pairs at sqrt(2).
    Class 1: the unit square's corners: 4 sides of 1 and 2 diagonals of sqrt(2) -> (4 + 2 sqrt 2) / 6.
    Class 2: a single point, no pair: left out."""
    simplex = torch.eye(3)
    square = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    feats = torch.cat([simplex, square, torch.zeros(1, 3)])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2])
    out = pairwise_distance(feats, labels)
    sq = (4 + 2 * math.sqrt(2)) / 6
    assert out["per_class"] == pytest.approx({0: math.sqrt(2), 1: sq})
    assert out["mean"] == pytest.approx((math.sqrt(2) + sq) / 2)
    # order of rows does not matter
    perm = torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))
    assert pairwise_distance(feats[perm], labels[perm])["mean"] == pytest.approx(out["mean"])


def test_pairwise_distance_errors():
    with pytest.raises(ValueError, match="no class has two"):
        pairwise_distance(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"feats \[N, D\]"):
        pairwise_distance(torch.zeros(3, 3), torch.tensor([0, 1]))


def test_conditional_prdc_sees_wrong_classes_marginal_does_not():
    """Fake samples that land on the right clusters but under swapped labels: marginal PRDC is perfect-ish,
    conditional PRDC (each class vs its own reference rows) is zero."""
    centers = 10.0 * torch.eye(4)
    real, real_y = _clusters(50, centers, seed=0)
    fake, fake_y = _clusters(50, centers, seed=1)
    right = conditional_prdc(real, real_y, fake, fake_y)
    wrong = conditional_prdc(real, real_y, fake, (fake_y + 1) % 4)
    assert right["mean"]["precision"] > 0.9 and right["mean"]["coverage"] > 0.9
    assert wrong["mean"] == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    assert set(right["per_class"]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="class 0"):
        conditional_prdc(real, real_y, fake[:3], fake_y[:3])


def test_input_errors():
    with pytest.raises(ValueError, match="more than k"):
        prdc(torch.zeros(5, 2), torch.zeros(10, 2), k=5)
    with pytest.raises(ValueError, match="dimension"):
        prdc(torch.randn(10, 2), torch.randn(10, 3), k=2)


def test_diversity_metrics_keys():
    centers = 10.0 * torch.eye(3)
    real, real_y = _clusters(30, centers, seed=0)
    fake, fake_y = _clusters(30, centers, seed=1)
    m = diversity_metrics(fake, fake_y, {"features": real, "labels": real_y}, k=3)
    assert set(m) == {f"{p}{n}_k3" for p in ("", "cond_") for n in ("precision", "recall", "density", "coverage")} \
        | {"pairwise_dist"}
    assert set(diversity_metrics(fake, None, {"features": real, "labels": real_y}, k=3)) == {
        "precision_k3", "recall_k3", "density_k3", "coverage_k3"}


def test_score_diversity_with_a_scorer(tmp_path):
    """Images -> the scorer's backbone features -> metrics keyed with the backbone name."""
    from common.evaluation import extract_features, metric_key, save_classifier
    from common.models import Classifier

    torch.manual_seed(0)
    model = Classifier(1, (8, 16), feature_dim=8, num_classes=10).eval()
    weights = tmp_path / "clf"
    save_classifier(model, weights, {"in_channels": 1, "channels": [8, 16], "feature_dim": 8, "num_classes": 10})
    g = torch.Generator().manual_seed(0)
    ref_imgs = torch.randint(0, 256, (60, 1, 8, 8), generator=g, dtype=torch.uint8)
    ref_y = torch.arange(60) % 3
    backbone = "test-diversity-classifier"
    ref = extract_features(ref_imgs, backbone, weights)
    ref["labels"] = ref_y
    scorer = SimpleNamespace(backbone=backbone, weights_dir=weights, ref=ref,
                             key=lambda m: metric_key(m, backbone))  # the SampleScorer attributes it reads
    out = score_diversity(scorer, ref_imgs.clone(), ref_y, k=3)
    assert out[f"precision_k3[{backbone}]"] == 1.0 and out[f"coverage_k3[{backbone}]"] == 1.0
    assert out[f"cond_recall_k3[{backbone}]"] == 1.0
    assert f"class_acc[{backbone}]" in out and f"pairwise_dist[{backbone}]" in out
