"""Schema of papers/align_your_steps/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, RootConfig, required


@dataclass
class SamplerConfig:
    eta: float = required(ge=0, le=1)  # DDIM (eta = 0: Euler in sigma); 1.0 is the stochastic DDIM the KLUB is derived for
    clip_x0: bool = REQUIRED  # the paper uses no thresholding (Sec. 5.2)
    guidance_scale: float = required(ge=0)  # plain conditional sampling


@dataclass
class OptimizeConfig:
    """Algorithm 1 with the hierarchical refinement of Sec. 3.3 / App. B.1."""

    num_steps: int = required(ge=1)  # the coarse schedule optimised first
    init: str = REQUIRED  # App. B.1: time-uniform for discrete-time models (edm | log_snr also allowed)
    num_data: int = required(ge=1)  # data subset x_0 of the KLUB (paper: 8192)
    num_draws: int = required(ge=1)  # Monte Carlo draws per KLUB estimate (shared by a point's candidates)
    num_candidates: int = required(ge=1)  # App. B.1: 11 candidates, the current value among them
    reach: float = required(gt=0, le=1)  # candidates span this fraction of the log-gap to each neighbour
    c: float = required(gt=0)  # Sec. 3.3: data std assumed by the importance-sampling density
    max_sweeps: int = required(ge=1)  # passes of Algorithm 1 over all interior points (early stopping may end sooner)
    refine_rounds: int = required(ge=0)  # subdivisions after the coarse stage (paper: 2, i.e. 10 -> 20 -> 40 steps)
    refine_sweeps: int = required(ge=1)  # passes over the new points of each round (their intervals are fixed)
    seed: int = required(ge=0)


@dataclass
class EarlyStoppingConfig:
    """App. A.3 / B.1: stop the coarse stage when a perceptual proxy (FID here) stops improving."""

    enabled: bool = REQUIRED
    num_samples: int = required(ge=1)
    seed: int = required(ge=0)  # disjoint from compare.seeds
    patience: int = required(ge=1)  # sweeps without a new best before stopping


@dataclass
class CompareConfig:
    nfe: List[int] = required(ge=1, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    baselines: List[str] = REQUIRED
    edm_rho: float = required(gt=0)
    klub_draws: int = required(ge=1)  # Monte Carlo draws for the KLUB of every compared schedule (report only)


@dataclass
class AlignYourStepsConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
