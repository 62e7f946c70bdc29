"""Schema of papers/time_shift/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig, bounded, seed_list


@dataclass
class SweepConfig:
    """(window, cutoff) chosen by FID on seeds disjoint from the comparison's."""

    sampler: str = "ddim"
    nfe: int = bounded(10, ge=1)
    window: List[int] = bounded(factory=lambda: [2, 10, 40, 80], ge=1, nonempty=True)
    cutoff: List[int] = bounded(factory=lambda: [300, 500], ge=0, nonempty=True)
    num_samples: int = bounded(500, ge=1)
    seeds: List[int] = seed_list(100)


@dataclass
class CompareConfig:
    samplers: List[str] = field(default_factory=lambda: ["ddim", "ddpm"])  # TS-DDIM and TS-DDPM
    nfe: List[int] = bounded(factory=lambda: [5, 10, 20], ge=1, nonempty=True)
    num_samples: int = bounded(400, ge=1)
    seeds: List[int] = seed_list(1, 2, 3)
    window: Optional[int] = bounded(None, ge=1)  # None: the sweep's choice ("tuned" arm)
    cutoff: Optional[int] = bounded(None, ge=0)
    # the official setting ("paper" arm): TS-DPM-ADM README, DDIM 5 steps, CIFAR-10
    paper_window: int = bounded(80, ge=1)
    paper_cutoff: int = bounded(300, ge=0)


@dataclass
class TimeShiftConfig(RootConfig):
    spacing: str = "linspace"
    clip_x0: bool = True
    guidance_scale: float = bounded(1.0, ge=0)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
