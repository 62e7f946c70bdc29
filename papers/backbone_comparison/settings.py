"""Each method's settings by its own paper's rule, never chosen on this page's seeds: the budgets, NFE, sample count
and sampling seed of papers/maskdit's evaluation (MaskDiT's equal-cost budget and the DiT snapshots below it; its
DiT and MaskDiT rows are reused, so every other backbone is sampled alike) and Flag-DiT's recipe from
papers/lumina_flag_dit. `budgets` in this page's params.yaml overrides the first (null: papers/maskdit's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from common.config import ConfigError, load_config
from papers.lumina_flag_dit.config import LuminaFlagDiTConfig
from papers.maskdit.config import MaskDiTConfig

PAGE = "backbone_comparison"


@dataclass
class Settings:
    budgets: List[int]       # in DiT steps' FLOPs, ascending; the last is the equal-compute budget of the claims
    # papers/maskdit's evaluation, whose DiT and MaskDiT rows are reused: the other backbones are sampled alike
    nfe: int                 # network calls per sample (eval.num_steps), every backbone
    sample_seed: int         # its first sampling seed: the per-sample noise seeds and labels of every sample set
    num_samples: int         # per sample set (eval.num_samples)


def paper_configs(overrides):
    """(papers/maskdit's config, papers/lumina_flag_dit's config) at this run's profile."""
    prof = [o for o in overrides if o.startswith("profile=")]
    return (load_config(MaskDiTConfig, paper="maskdit", overrides=prof),
            load_config(LuminaFlagDiTConfig, paper="lumina_flag_dit", overrides=prof))


def select(cfg, mask_cfg) -> Settings:
    """The settings of this page's run (module docstring)."""
    ev = mask_cfg.eval
    budgets = cfg.budgets or sorted({*[s for s in ev.dit_steps if s < mask_cfg.cost_step], mask_cfg.cost_step})
    if mask_cfg.cost_step not in budgets:
        raise ConfigError(f"papers/{PAGE}/params.yaml: budgets {budgets} must include papers/maskdit's cost_step "
                          f"{mask_cfg.cost_step} (the equal-compute budget of the claims)")
    missing = [b for b in budgets if b != mask_cfg.cost_step and b not in ev.dit_steps]
    if missing:
        raise ConfigError(f"papers/{PAGE}/params.yaml: budgets {missing} have no DiT row in papers/maskdit "
                          f"(its eval.dit_steps {list(ev.dit_steps)} and cost_step {mask_cfg.cost_step})")
    return Settings(sorted(budgets), ev.num_steps, ev.seeds[0], ev.num_samples)
