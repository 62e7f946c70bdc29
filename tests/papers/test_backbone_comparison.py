"""The transformer-backbone comparison page: each backbone's settings by its own paper's rule, equal-FLOPs budgets,
and the rows it reuses from papers/maskdit. The tiny end-to-end run is in tests/papers/test_maskdit.py (it runs on
that file's tiny MaskDiT pipeline, whose outputs the page reads)."""

import json
from types import SimpleNamespace as NS

import pytest

from common.config import ConfigError, MissingInputError, load_config
from papers.backbone_comparison import backbones as bb
from papers.backbone_comparison.config import BackboneComparisonConfig
from papers.backbone_comparison.evaluate import maskdit_rows
from papers.backbone_comparison.settings import paper_configs, select
from papers.maskdit.train import step_flops

MASK = NS(cost_step=1000, eval=NS(dit_steps=[500, 1500], num_steps=16, seeds=[1, 2], num_samples=500))


def test_budgets_are_maskdits_cost_curve_up_to_its_equal_cost_budget():
    s = select(NS(budgets=None), MASK)
    assert s.budgets == [500, 1000]  # eval.dit_steps below cost_step, then cost_step (MaskDiT's own budget)
    assert (s.nfe, s.sample_seed, s.num_samples) == (16, 1, 500)  # papers/maskdit's evaluation, rows reused


def test_a_budget_override_wins_and_must_keep_the_equal_cost_budget():
    assert select(NS(budgets=[1000]), MASK).budgets == [1000]
    with pytest.raises(ConfigError, match="papers/backbone_comparison/params.yaml: budgets .*cost_step 1000"):
        select(NS(budgets=[500]), MASK)
    with pytest.raises(ConfigError, match=r"budgets \[700\] have no DiT row"):
        select(NS(budgets=[700, 1000]), MASK)


def test_the_committed_params_select_maskdits_settings():
    cfg = load_config(BackboneComparisonConfig, paper="backbone_comparison")
    mask_cfg, flag_cfg = paper_configs([])
    s = select(cfg, mask_cfg)
    assert s.budgets[-1] == mask_cfg.cost_step and s.nfe == mask_cfg.eval.num_steps
    assert flag_cfg.train.lr_schedule == "constant_with_warmup"  # the EMA at a budget's step = a run of that length


def test_equal_flops_steps_and_the_dit_count_agree_with_papers_maskdit():
    """The DiT step's FLOPs counted here equal papers/maskdit's own count, and a backbone at k DiT steps' budget
    gets round(k x F_DiT / F) steps."""
    cfg = load_config(BackboneComparisonConfig, paper="backbone_comparison", overrides=["profile=tiny"])
    mask_cfg, flag_cfg = paper_configs(["profile=tiny"])
    nets = bb.backbones(cfg, mask_cfg, flag_cfg, channels=1)
    f = {k: bb.step_flops(nets[k], 1, cfg.data.resolution) for k in ("DiT", "MaskDiT", "Flag-DiT")}
    assert f["DiT"] == step_flops(mask_cfg, 1)["dit"] and f["MaskDiT"] == step_flops(mask_cfg, 1)["masked"]
    assert bb.steps_at_budgets([6, 12], 300, 200) == [9, 18]
    assert bb.steps_at_budgets([1], 10, 1000) == [1]  # at least one step
    steps = bb.steps_at_budgets([12], f["DiT"], f["Flag-DiT"])[0]
    assert abs(steps * f["Flag-DiT"] - 12 * f["DiT"]) <= f["Flag-DiT"] / 2


def test_reused_rows_are_maskdits_unguided_dit_curve_and_tuned_maskdit(tmp_path):
    key = "fid[x]"
    rows = [{"comparison": "cost_curve", "arm": "dit", "dit_step": 500, "guidance": 1.0, "train_seed": 0,
             "sample_seed": 1, key: 30.0},
            {"comparison": "cost_curve", "arm": "dit", "dit_step": 1000, "guidance": 1.0, "train_seed": 0,
             "sample_seed": 1, key: 20.0},
            {"comparison": "equal_cost", "arm": "baseline", "guidance": 1.0, "train_seed": 0, "sample_seed": 1, key: 20.0},
            {"comparison": "equal_cost", "arm": "method", "guidance": 1.0, "train_seed": 0, "sample_seed": 1, key: 15.0},
            {"comparison": "equal_cost", "arm": "method", "guidance": 1.5, "train_seed": 0, "sample_seed": 1, key: 9.0},
            {"comparison": "equal_cost", "arm": "method", "guidance": 1.0, "train_seed": 0, "sample_seed": 2, key: 8.0},
            {"comparison": "mae", "arm": "method", "guidance": 1.0, "train_seed": 0, "sample_seed": 1, key: 1.0}]
    (tmp_path / "maskdit").mkdir()
    (tmp_path / "maskdit" / "results.json").write_text(json.dumps({"rows": rows}))
    got = maskdit_rows(tmp_path, NS(sample_seed=1), [key])
    assert [(r["arm"], r["budget"], r[key]) for r in got] == [("DiT", 500, 30.0), ("DiT", 1000, 20.0),
                                                               ("MaskDiT", None, 15.0)]
    with pytest.raises(MissingInputError, match="papers/maskdit/dvc.yaml:evaluate"):
        maskdit_rows(tmp_path / "nowhere", NS(sample_seed=1), [key])


def test_full_profile_resolves_at_paper_scale():
    """The full profile: papers/maskdit's full budgets, and Flag-DiT's steps at the full DiT-XL/2's FLOPs, counted
    on meta tensors (nothing is allocated)."""
    cfg = load_config(BackboneComparisonConfig, paper="backbone_comparison", overrides=["profile=full"])
    mask_cfg, flag_cfg = paper_configs(["profile=full"])
    s = select(cfg, mask_cfg)
    assert s.budgets == [*mask_cfg.eval.dit_steps, mask_cfg.cost_step] and s.num_samples == 50000
    nets = bb.backbones(cfg, mask_cfg, flag_cfg, channels=3)
    f = {k: bb.step_flops(nets[k], 3, cfg.data.resolution) for k in ("DiT", "Flag-DiT")}
    steps = bb.steps_at_budgets(s.budgets, f["DiT"], f["Flag-DiT"])
    assert steps == sorted(steps) and all(st > 0 for st in steps)
