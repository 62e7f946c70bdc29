"""Schema of papers/epsilon_scaling/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig, bounded, seed_list


@dataclass
class SamplerConfig:
    method: str = "ddpm"  # ddpm (ADM's ancestral sampler, as in the paper's Table 1) | ddim
    spacing: str = "linspace"  # ADM respacing
    clip_x0: bool = True  # the official code clips x0_hat; without it ES diverges at the first step
    guidance_scale: float = bounded(1.0, ge=0)  # plain conditional sampling: no classifier-free guidance


@dataclass
class CompareConfig:
    nfe: List[int] = bounded(factory=lambda: [10, 20, 50], ge=1, nonempty=True)
    num_samples: int = bounded(500, ge=1)
    seeds: List[int] = seed_list(1, 2, 3)
    b: Optional[float] = bounded(None, gt=0)  # None: the argmin of the sweep (chosen on the sweep's own seeds)
    linear_nfe: int = bounded(20, ge=1)  # where the linear schedule k t + b is compared
    linear_b0: float = bounded(1.0, gt=0)  # lambda on the last step of the linear schedule


@dataclass
class SweepConfig:
    nfe: int = bounded(20, ge=1)
    b: List[float] = bounded(factory=lambda: [1.0, 1.005, 1.01, 1.02, 1.03, 1.05], gt=0, nonempty=True)
    num_samples: int = bounded(300, ge=1)
    seeds: List[int] = seed_list(100, 101, 102)


@dataclass
class EpsilonScalingConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
