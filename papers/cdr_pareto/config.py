"""Schema of papers/cdr_pareto/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import RootConfig, bounded, seed_list


@dataclass
class SamplerConfig:
    method: str = "ddim"
    spacing: str = "linspace"
    clip_x0: bool = True
    nfe: int = bounded(10, ge=1)  # steps of the guidance and CADS sweeps


@dataclass
class KnobsConfig:
    """The knob settings swept; every distinct (w, s, nfe) is sampled once per seed."""

    guidance: List[float] = bounded(factory=lambda: [1.0, 2.0, 3.0, 4.0, 6.0, 8.0], ge=0, nonempty=True)  # w, CADS off
    cads_s: List[float] = bounded(factory=lambda: [1.0, 2.0], ge=0)  # CADS s (tau 0.6..0.9, psi 1) ...
    cads_guidance: List[float] = bounded(factory=lambda: [4.0, 8.0], ge=0)  # ... at these w
    steps: List[int] = bounded(factory=lambda: [5, 10, 20], ge=1)  # NFE ...
    steps_guidance: float = bounded(4.0, ge=0)  # ... at this w, CADS off


@dataclass
class EvalConfig:
    num_samples: int = bounded(400, ge=1)  # per knob setting and seed (balanced classes)
    seeds: List[int] = seed_list(1, 2, 3)
    k: int = bounded(5, ge=1)  # PRDC neighbourhood (Naeem et al.); claims.yaml names metrics `*_k5`
    claim_guidance: float = bounded(4.0, ge=0)  # the "method" arm of the claims (the baseline arm is w = 1)
    grid_samples: int = bounded(100, ge=1)


@dataclass
class CDRParetoConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    knobs: KnobsConfig = field(default_factory=KnobsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
