"""CDR Pareto fronts (Astolfi et al. 2024): the front on hand-made points, the axes, the sweep plan."""

import numpy as np
import pytest
import torch

from common.config import load_config
from papers.cdr_pareto.config import CDRParetoConfig
from papers.cdr_pareto.evaluate import knob_settings, planned_model_calls
from papers.cdr_pareto.method import cdr_metrics, consistency, pareto_front


def brute_force_front(points, maximize):
    """The definition, as loops: p is on the front unless some q is >= on all objectives and > on one."""
    sign = [1 if m else -1 for m in maximize]
    x = [[s * v for s, v in zip(sign, p)] for p in points]
    return [not any(all(a >= b for a, b in zip(q, p)) and any(a > b for a, b in zip(q, p)) for q in x) for p in x]


def test_front_hand_made_points():
    pts = [[1, 5], [2, 4], [3, 3], [2, 2], [1, 1], [3, 3]]
    # both maximised: (2,2) is dominated by (2,4) and (3,3); (1,1) by everything; the two (3,3) stay together
    assert pareto_front(pts).tolist() == [True, True, True, False, False, True]
    # maximise x, minimise y: (3,3) beats (2,4) and (1,5); (2,2) and (1,1) trade x for lower y
    assert pareto_front(pts, [True, False]).tolist() == [False, False, True, True, True, True]
    # minimise both: only (1,1) survives
    assert pareto_front(pts, [False, False]).tolist() == [False, False, False, False, True, False]


def test_front_of_a_tradeoff_curve_and_a_dominated_interior():
    """Points on the quarter circle x^2 + y^2 = 1 are mutually non-dominated; points inside are dominated."""
    a = np.linspace(0, np.pi / 2, 9)
    curve = np.stack([np.cos(a), np.sin(a)], 1)
    inside = 0.9 * curve[1:-1]
    mask = pareto_front(np.concatenate([curve, inside]))
    assert mask.tolist() == [True] * 9 + [False] * 7


def test_front_matches_the_definition_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(20):
        pts = rng.integers(0, 4, size=(15, 3)).astype(float)  # many ties
        maximize = [bool(b) for b in rng.integers(0, 2, 3)]
        assert pareto_front(pts, maximize).tolist() == brute_force_front(pts.tolist(), maximize), trial


def test_front_nan_and_shape_errors():
    assert pareto_front([[1.0, np.nan], [0.0, 0.0]]).tolist() == [False, True]
    with pytest.raises(ValueError, match="maximize has 3"):
        pareto_front([[1, 2]], [True, True, True])
    with pytest.raises(ValueError, match=r"\[P, M\]"):
        pareto_front([1, 2, 3])


def test_consistency_hand_computed():
    # sample 0: logits (0, ln 3) -> p = (1/4, 3/4), label 1: right, p_target = 0.75
    # sample 1: logits (0, 0)    -> p = (1/2, 1/2), label 0: argmax picks 0, right, p_target = 0.5
    # sample 2: logits (ln 4, 0) -> p = (4/5, 1/5), label 1: wrong, p_target = 0.2
    logits = torch.tensor([[0.0, np.log(3.0)], [0.0, 0.0], [np.log(4.0), 0.0]])
    out = consistency(logits, torch.tensor([1, 0, 1]))
    assert out["class_acc"] == pytest.approx(2 / 3)
    assert out["target_prob"] == pytest.approx((0.75 + 0.5 + 0.2) / 3)


def test_cdr_metrics_of_the_reference_itself():
    """Scoring the reference set against itself: realism and marginal/conditional coverage are perfect."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    feats = 5.0 * torch.nn.functional.one_hot(labels, 4).double() + 0.3 * torch.randn(60, 4, generator=g)
    logits = torch.nn.functional.one_hot(labels, 3).float() * 4
    m = cdr_metrics(feats, logits, labels, {"features": feats, "labels": labels}, k=5)
    for name in ("class_acc", "precision_k5", "recall_k5", "coverage_k5", "cond_precision_k5", "cond_coverage_k5"):
        assert m[name] == pytest.approx(1.0), name
    assert m["density_k5"] == pytest.approx(1.0)  # no ties: each k-NN ball holds itself + k-1 others
    assert 0 < m["pairwise_dist"] < 1.0  # within-class spread only (classes are 5 apart)


def test_sweep_plan_and_its_cost():
    """The cpu profile's settings and the sample-call arithmetic written in params.yaml."""
    cfg = load_config(CDRParetoConfig, paper="cdr_pareto", overrides=["profile=cpu"])
    settings = knob_settings(cfg)
    assert len(settings) == len(set(settings)) == 6 + 4 + 3 - 1  # (w=4, s=0, 10 steps) is on two sweeps
    assert (1.0, 0.0, cfg.sampler.nfe) in settings and (cfg.eval.claim_guidance, 0.0, cfg.sampler.nfe) in settings
    assert planned_model_calls(cfg) == 288_000  # params.yaml comment; <= 350k sample-calls (~6.5 min)
    assert len(cfg.eval.seeds) >= 3
    tiny = load_config(CDRParetoConfig, paper="cdr_pareto", overrides=["profile=tiny"])
    assert tiny.eval.num_samples // 10 > tiny.eval.k  # conditional PRDC needs more than k samples per class
