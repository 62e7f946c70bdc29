"""MJ-Bench: the benchmark's metrics against the paper's definitions and the official code's numbers, the benchmark's
construction, the config and claims, the full profile (CLIP ViT-L/14 on the meta device, two Bradley-Terry steps of a
reduced CLIP + reward head), and the tiny pipeline.

Reference numbers: the worked examples of issue 17 and `test_official_functions_on_fixed_inputs`, whose numbers
come from running the official MJ-Bench/MJ-Bench functions (HEAD of the repository, 2026-11-26) OUTSIDE this repo on
the inputs written there: evaluate_bias_type.py `gini_coefficient` / `fit_gaussian_and_report_properties` /
`get_acc` (with numpy 2's refusal of np.sum(generator) shimmed back to numpy 1's builtin-sum behaviour: the official
Gini line does not run on numpy >= 2 as written), utils/rm_utils.py `get_pred` / `get_label`, and personal/test.py's
two accuracy loops (lines 51-87, ties encoded as 0.5); plus the two Gini formulas recomputed here by hand.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from smoke import two_steps

from common.claims import load_claims
from common.config import load_config
from papers.mj_bench import method
from papers.mj_bench.config import MJBenchConfig

REPO = Path(__file__).resolve().parents[2]
S = [7, 8, 8, 6, 9, 5, 7, 7, 8, 6]


# --------------------------------------------------------------------------- metrics
def test_gini_ges_nds_reference():
    """s = [7, 8, 8, 6, 9, 5, 7, 7, 8, 6]: G = .0887324 (both formulas), GES = .911268, NDS = .840031 (issue 17's
    reference, official gini_coefficient and norm.fit)."""
    s = np.array(S, dtype=float)
    assert method.gini(s) == pytest.approx(0.0887324, abs=1e-7)
    assert method.gini_sorted(s) == pytest.approx(0.0887324, abs=1e-7)
    assert method.ges(s) == pytest.approx(0.911268, abs=1e-6)
    assert method.nds(s) == pytest.approx(0.840031, abs=1e-6)


def test_gini_by_hand_on_three_values():
    """s = [1, 2, 3]: sum |s_i - s_j| = 8, mu = 2, n = 3 -> G = 8 / (2 * 9 * 2) = 2/9 (both formulas)."""
    assert method.gini([1, 2, 3]) == pytest.approx(2 / 9) == method.gini_sorted([1, 2, 3])


def test_tie_accuracies_reference():
    """Labels [0, 1, 0, 1, tie, 0] vs predictions [0, 0, tie, 1, 0, tie]: acc w/ tie = 2/5 = .4, w/o tie = 2/3
    (personal/test.py: human ties dropped; tie predictions wrong / filtered)."""
    a = method.accuracies([0, 1, 0, 1, method.TIE, 0], [0, 0, method.TIE, 1, 0, method.TIE])
    assert a["acc_w_tie"] == pytest.approx(0.4) and a["acc_wo_tie"] == pytest.approx(2 / 3, abs=1e-4)


def test_official_functions_on_fixed_inputs():
    """Numbers printed by the official functions (see the module docstring): evaluate_bias_type.py on
    B = [.31, .35, .30, .52, .33, .41] -> NDS .7947606171190177, GES .8933933933933933, ACC .6; on S min-max
    normalised -> NDS .45915158611425977, GES .7, ACC .15555555555555556; rm_utils get_pred at thr .1 on six score
    pairs -> ['0', '0', 'tie', '1', '0', 'tie'], get_label of label_0 [1, 0, 1, 0, .5, 1] -> ['0', '1', '0', '1',
    'tie', '0']; personal/test.py on those: filter-tie accuracy .6666666666666666, re-introduced ties .4."""
    b = np.array([0.31, 0.35, 0.30, 0.52, 0.33, 0.41])
    assert (method.nds(b), method.ges(b), method.bias_acc(b)) == pytest.approx((0.7947606171190177,
                                                                                0.8933933933933933, 0.6), abs=1e-12)
    n = method.minmax(np.array(S, float))
    assert (method.nds(n), method.ges(n), method.bias_acc(n)) == pytest.approx((0.45915158611425977, 0.7,
                                                                                0.15555555555555556), abs=1e-12)
    pairs = [(0.9, 0.2), (0.8, 0.3), (0.5, 0.55), (0.1, 0.7), (0.6, 0.2), (0.4, 0.45)]
    preds = [method.get_pred(a, c, 0.1) for a, c in pairs]
    labels = [method.get_label(x) for x in (1, 0, 1, 0, 0.5, 1)]
    assert preds == [0, 0, method.TIE, 1, 0, method.TIE] and labels == [0, 1, 0, 1, method.TIE, 0]
    a = method.accuracies(labels, preds)
    assert (a["acc_w_tie"], a["acc_wo_tie"]) == pytest.approx((0.4, 0.6666666666666666), abs=1e-12)


def test_get_pred_and_get_label():
    """utils/rm_utils.py: a tie when |s0 - s1| <= thr (the boundary included); label_0 .5 / 1 / 0."""
    assert method.get_pred(0.5, 0.4, 0.1) == method.TIE and method.get_pred(0.5, 0.39, 0.1) == 0
    assert method.get_pred(0.1, 0.2) == 1 and method.get_pred(0.3, 0.3) == method.TIE
    assert [method.get_label(x) for x in (0.5, 1, 0)] == [method.TIE, 0, 1]


def test_acc_wo_tie_at_least_acc_w_tie_over_thresholds():
    """Definitional: filtering tie predictions cannot lower the accuracy; a larger threshold only adds ties."""
    rng = np.random.default_rng(0)
    c, r = rng.random(200) + 0.1, rng.random(200)
    accs = [method.pair_accuracies(c, r, t) for t in (0, 0.05, 0.1, 0.3)]
    assert all(a["acc_wo_tie"] >= a["acc_w_tie"] for a in accs)
    assert np.all(np.diff([a["tie_share"] for a in accs]) >= 0)


def test_bias_metrics_normalisation_switch():
    """A judge constant within each group scores ACC = GES = NDS = 1; min-max normalisation (evaluate_bias_type.py)
    changes the numbers of a varying judge vs the raw scores (evaluate_bias_avg.py: the line is commented out)."""
    fair = [np.full(6, 3.0), np.full(6, 5.0)]
    assert method.bias_metrics(fair) == {"bias_acc": 1.0, "ges": 1.0, "nds": 1.0}
    groups = [np.array(S, float), np.array(S, float) + 2]
    norm, raw = (method.bias_metrics(groups, 0.2, normalise=n) for n in (True, False))
    assert raw["ges"] == pytest.approx((method.ges(groups[0]) + method.ges(groups[1])) / 2)
    assert norm["nds"] < raw["nds"] and norm["bias_acc"] != raw["bias_acc"]
    assert method.bias_acc(np.array([0.0, 0.05, 0.3])) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- the benchmark's items
def test_pairs_differ_only_as_their_perspective_says():
    """Chosen and rejected images share glyphs; the oracle (ground truth) prefers every chosen image."""
    from common.stages.train_reward_model import digit_banks
    from papers.mj_bench.benchmark import PERSPECTIVES, RENDERED, bias_groups, preference_set, stack
    from papers.mj_bench.evaluate import ground_truth_scores

    cfg = load_config(MJBenchConfig, paper="mj_bench", root=REPO, overrides=["profile=tiny"])
    _, heldout = digit_banks(cfg)
    pairs = stack(preference_set(heldout, 2, 0, "red", 10))
    for persp in PERSPECTIVES:
        p = pairs[persp]
        unsafe = "red" if persp == "safety" else None
        c = ground_truth_scores(p["prompt"], p["chosen_truth"], unsafe, False)
        r = ground_truth_scores(p["prompt"], p["rejected_truth"], unsafe, persp == "quality")
        assert np.all(c > r) and p["chosen"].shape == p["rejected"].shape
        assert set(p["kind"]) == set(RENDERED.get(persp, PERSPECTIVES[persp]))
    assert all(not any(o.colour == "red" for o in t) for t in pairs["safety"]["chosen_truth"])
    g = bias_groups(heldout, 2, 0)
    assert g[0]["images"].shape[0] == len(g[0]["variants"]) and "red" not in g[0]["prompt"]


# --------------------------------------------------------------------------- config and claims
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(MJBenchConfig, paper="mj_bench", root=REPO, overrides=[f"profile={profile}"])
    assert (cfg.published is not None) == (profile == "full") and len(cfg.seeds) >= 3


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "mj_bench" / "claims.yaml")
    assert {c["test"]["where"]["comparison"] for c in claims} == {
        "rm_vs_clip", "oracle_calibration", "tie_order", "tie_gap", "bias_fairness"}


# --------------------------------------------------------------------------- full profile
def test_full_profile_refuses_to_start():
    from common.config import UserError
    from papers.mj_bench.evaluate import refuse_full

    cfg = load_config(MJBenchConfig, paper="mj_bench", root=REPO, overrides=["profile=full"])
    with pytest.raises(UserError, match="not runnable yet"):
        refuse_full(cfg)
    assert cfg.published.items == [724, 574, 1121, 480]


def test_full_profile_clip_vit_l14_parameter_count():
    """The CLIP-score judge at its published size: open_clip ViT-L-14 built on the meta device (no weights):
    427,616,513 parameters (OpenAI CLIP ViT-L/14: 304.3M vision + 123.1M text + projections and logit scale)."""
    import open_clip

    cfg = load_config(MJBenchConfig, paper="mj_bench", root=REPO, overrides=["profile=full"])
    with torch.device("meta"):
        model = open_clip.CLIP(**open_clip.get_model_config(cfg.published.clip_model))
    assert sum(p.numel() for p in model.parameters()) == 427_616_513


def test_full_profile_two_steps_of_a_reduced_reward_model():
    """Two Bradley-Terry steps at batch 1 (one pair) of a reward head on a frozen CLIP with ViT-L/14's layout,
    depth and widths reduced (2 layers, width 64), through common.judges' RewardHead and bradley_terry_loss."""
    import open_clip

    from common.judges import RewardHead, bradley_terry_loss

    torch.manual_seed(0)
    clip = open_clip.CLIP(embed_dim=32, vision_cfg={"image_size": 28, "patch_size": 14, "width": 64, "layers": 2},
                          text_cfg={"context_length": 16, "vocab_size": 100, "width": 64, "heads": 4, "layers": 2})
    clip.requires_grad_(False)
    head = RewardHead(32, 16)
    x = torch.randn(2, 3, 28, 28)  # chosen, rejected
    t = torch.randint(0, 100, (1, 16)).repeat(2, 1)

    def loss(_g):
        i = torch.nn.functional.normalize(clip.encode_image(x), dim=-1)
        tx = torch.nn.functional.normalize(clip.encode_text(t), dim=-1)
        s = head(i, tx)
        return bradley_terry_loss(s[:1], s[1:])

    two_steps(head, loss, lr=1e-2)


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data, classifier, scenes, scene CLIP, T2I model, reward model -> evaluate, report (tiny profile)."""
    import importlib

    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    shared = ["prepare_data", "train_classifier", "build_scenes", "train_scene_clip", "train_t2i", "train_reward_model"]
    stages = [importlib.import_module(f"common.stages.{s}") for s in shared] + [
        importlib.import_module(f"papers.mj_bench.{s}") for s in ("evaluate", "report")]
    with inside(root):
        for stage in stages:
            stage.main([])
    res = json.loads((root / "reports/mj_bench/results.json").read_text())
    assert {r.get("comparison") for r in res["rows"]} >= {"rm_vs_clip", "tie_gap", "bias_fairness"}
    verdicts = json.loads((root / "reports/mj_bench/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == len(load_claims(REPO / "papers" / "mj_bench" / "claims.yaml"))
    for fig in ("benchmark_table", "accuracy_vs_threshold", "bias_scores"):
        assert (root / f"reports/mj_bench/figures/{fig}.png").stat().st_size > 1000
