"""Schema of papers/dpo_diff/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field

from common.config import REQUIRED, RootConfig, required


@dataclass
class SamplerConfig:
    method: str = REQUIRED  # deterministic DDIM (the official SD pipeline's sampler)
    nfe: int = required(ge=2)
    guidance_scale: float = required(ge=1)
    images: int = required(ge=1)  # images per evaluation (one evaluation = one generation of these)


@dataclass
class GPOConfig:
    """The official GPO settings (configs of ruocwang/dpo-diffusion), iterations scaled to the budget."""

    iters: int = required(ge=1)
    lr: float = required(gt=0)
    momentum: float = required(ge=0)
    grad_clip: float = required(gt=0)
    logit_max: float = required(gt=0)
    tau: float = required(gt=0)
    schedule_start: int = required(ge=0)  # "step-15-2": t = start + floor(i / every) of ref_steps
    schedule_every: int = required(ge=1)
    ref_steps: int = required(ge=1)


@dataclass
class SearchConfig:
    evaluations: int = required(ge=2)  # per optimiser and prompt: equal counts for GPO, EPO, hybrid, random
    epo_population: int = required(ge=2)
    epo_keep: int = required(ge=1)
    mutation: float = required(ge=0, le=1)


@dataclass
class GradCheckConfig:
    """Claim 4: shortcut vs full-backprop gradient on small cases."""

    nfe: int = required(ge=2)
    prompts: int = required(ge=1)
    draws: int = required(ge=1)  # Gumbel draws (cases) per prompt


@dataclass
class DPODiffConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    gpo: GPOConfig = field(default_factory=GPOConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    gradcheck: GradCheckConfig = field(default_factory=GradCheckConfig)
    user_prompts: int = required(ge=1)  # replication units: held-out test captions
    opt_seed: int = required(ge=0)  # image seeds the optimisers see
    fresh_seed: int = required(ge=0)  # image seeds of the final comparison (never optimised on)
