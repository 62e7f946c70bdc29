"""Schema of papers/cads/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class AnnealerConfig:
    """CADS hyperparameters (method.CADS): schedule window tau1 < tau2 (eq. 2), noise scale s, mixing psi."""

    tau1: float = required(ge=0, le=1)
    tau2: float = required(ge=0, le=1)
    s: float = required(ge=0)
    psi: float = required(ge=0, le=1)


@dataclass
class SamplerConfig:
    method: str = REQUIRED  # the paper's main sampler (DiT's ancestral DDPM)
    nfe: int = required(ge=1)
    spacing: str = REQUIRED
    clip_x0: bool = REQUIRED


@dataclass
class SweepConfig:
    """(window, s) of the tuned CADS arm: lowest FID at `guidance_scale`, on seeds disjoint from the comparison's."""

    guidance_scale: float = required(ge=0)
    windows: List[List[float]] = required(ge=0, le=1, nonempty=True)
    s: List[float] = required(ge=0, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class CompareConfig:
    guidance_scales: List[float] = required(ge=0)  # CFG and tuned CADS
    dynamic_cfg_scales: List[float] = required(ge=0)  # the guidance-annealing baseline
    paper_scales: List[float] = required(ge=0)  # CADS with the `paper` hyperparameters
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    window: Optional[List[float]] = required(ge=0, le=1)  # [tau1, tau2]; None: the sweep's choice
    s: Optional[float] = required(ge=0)  # None: the sweep's choice


@dataclass
class CADSConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    paper: AnnealerConfig = field(default_factory=AnnealerConfig)  # the published defaults (see params.yaml)
    diversity_k: int = required(ge=1)  # k of PRDC (Naeem et al.'s recommendation)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
