"""Schema of papers/cads/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig, bounded, seed_list, unit


@dataclass
class AnnealerConfig:
    """CADS hyperparameters (method.CADS): schedule window tau1 < tau2 (eq. 2), noise scale s, mixing psi."""

    tau1: float = unit(0.6)
    tau2: float = unit(0.9)
    s: float = bounded(0.25, ge=0)
    psi: float = unit(1.0)


@dataclass
class SamplerConfig:
    method: str = "ddpm"  # the paper's main sampler (DiT's ancestral DDPM)
    nfe: int = bounded(20, ge=1)
    spacing: str = "linspace"
    clip_x0: bool = True


@dataclass
class SweepConfig:
    """(window, s) of the tuned CADS arm: lowest FID at `guidance_scale`, on seeds disjoint from the comparison's."""

    guidance_scale: float = bounded(8.0, ge=0)
    windows: List[List[float]] = unit(factory=lambda: [[0.6, 0.9], [0.2, 0.6], [0.1, 0.5]], nonempty=True)
    s: List[float] = bounded(factory=lambda: [0.5, 1.0, 2.0], ge=0, nonempty=True)
    num_samples: int = bounded(150, ge=1)
    seeds: List[int] = seed_list(100)


@dataclass
class CompareConfig:
    guidance_scales: List[float] = bounded(factory=lambda: [1.0, 3.0, 5.0, 8.0], ge=0)  # CFG and tuned CADS
    dynamic_cfg_scales: List[float] = bounded(factory=lambda: [3.0, 5.0, 8.0], ge=0)  # the guidance-annealing baseline
    paper_scales: List[float] = bounded(factory=lambda: [8.0], ge=0)  # CADS with the `paper` hyperparameters
    num_samples: int = bounded(200, ge=1)
    seeds: List[int] = seed_list(1, 2, 3)
    window: Optional[List[float]] = unit(None)  # [tau1, tau2]; None: the sweep's choice
    s: Optional[float] = bounded(None, ge=0)  # None: the sweep's choice


@dataclass
class CADSConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    paper: AnnealerConfig = field(default_factory=AnnealerConfig)  # the published defaults (see params.yaml)
    diversity_k: int = bounded(5, ge=1)  # k of PRDC (Naeem et al.'s recommendation)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
