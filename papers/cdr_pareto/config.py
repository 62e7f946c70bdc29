"""Schema of papers/cdr_pareto/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, RootConfig, required


@dataclass
class SamplerConfig:
    method: str = REQUIRED
    spacing: str = REQUIRED
    clip_x0: bool = REQUIRED
    nfe: int = required(ge=1)  # steps of the guidance and CADS sweeps


@dataclass
class KnobsConfig:
    """The knob settings swept; every distinct (w, s, nfe) is sampled once per seed."""

    guidance: List[float] = required(ge=0, nonempty=True)  # w, CADS off
    cads_s: List[float] = required(ge=0)  # CADS s (tau 0.6..0.9, psi 1) ...
    cads_guidance: List[float] = required(ge=0)  # ... at these w
    steps: List[int] = required(ge=1)  # NFE ...
    steps_guidance: float = required(ge=0)  # ... at this w, CADS off


@dataclass
class EvalConfig:
    num_samples: int = required(ge=1)  # per knob setting and seed (balanced classes)
    seeds: List[int] = required(ge=0, nonempty=True)
    k: int = required(ge=1)  # PRDC neighbourhood (Naeem et al.); claims.yaml names metrics `*_k5`
    claim_guidance: float = required(ge=0)  # the "method" arm of the claims (the baseline arm is w = 1)
    grid_samples: int = required(ge=1)


@dataclass
class CDRParetoConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    knobs: KnobsConfig = field(default_factory=KnobsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
