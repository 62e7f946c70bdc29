"""Schema of papers/epsilon_scaling/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class SamplerConfig:
    method: str = REQUIRED  # ddpm (ADM's ancestral sampler, as in the paper's Table 1) | ddim
    spacing: str = REQUIRED  # ADM respacing
    clip_x0: bool = REQUIRED  # the official code clips x0_hat; without it ES diverges at the first step
    guidance_scale: float = required(ge=0)  # plain conditional sampling: no classifier-free guidance


@dataclass
class CompareConfig:
    nfe: List[int] = required(ge=1, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    b: Optional[float] = required(gt=0)  # None: the argmin of the sweep (chosen on the sweep's own seeds)
    linear_nfe: int = required(ge=1)  # where the linear schedule k t + b is compared
    linear_b0: float = required(gt=0)  # lambda on the last step of the linear schedule


@dataclass
class SweepConfig:
    nfe: int = required(ge=1)
    b: List[float] = required(gt=0, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class EpsilonScalingConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
