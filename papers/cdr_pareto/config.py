"""Schema of papers/cdr_pareto/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import RootConfig


@dataclass
class SamplerConfig:
    method: str = "ddim"
    spacing: str = "linspace"
    clip_x0: bool = True
    nfe: int = 10  # steps of the guidance and CADS sweeps


@dataclass
class KnobsConfig:
    """The knob settings swept; every distinct (w, s, nfe) is sampled once per seed."""

    guidance: List[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.0, 6.0, 8.0])  # w, CADS off
    cads_s: List[float] = field(default_factory=lambda: [1.0, 2.0])  # CADS s (tau 0.6..0.9, psi 1) ...
    cads_guidance: List[float] = field(default_factory=lambda: [4.0, 8.0])  # ... at these w
    steps: List[int] = field(default_factory=lambda: [5, 10, 20])  # NFE ...
    steps_guidance: float = 4.0  # ... at this w, CADS off


@dataclass
class EvalConfig:
    num_samples: int = 400  # per knob setting and seed (balanced classes)
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    k: int = 5  # PRDC neighbourhood (Naeem et al.); claims.yaml names metrics `*_k5`
    claim_guidance: float = 4.0  # the "method" arm of the claims (the baseline arm is w = 1)
    grid_samples: int = 100


@dataclass
class CDRParetoConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    knobs: KnobsConfig = field(default_factory=KnobsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
