"""Schema of papers/time_shift/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig


@dataclass
class SweepConfig:
    """(window, cutoff) chosen by FID on seeds disjoint from the comparison's."""

    sampler: str = "ddim"
    nfe: int = 10
    window: List[int] = field(default_factory=lambda: [2, 10, 40, 80])
    cutoff: List[int] = field(default_factory=lambda: [300, 500])
    num_samples: int = 500
    seeds: List[int] = field(default_factory=lambda: [100])


@dataclass
class CompareConfig:
    samplers: List[str] = field(default_factory=lambda: ["ddim", "ddpm"])  # TS-DDIM and TS-DDPM
    nfe: List[int] = field(default_factory=lambda: [5, 10, 20])
    num_samples: int = 400
    seeds: List[int] = field(default_factory=lambda: [1, 2, 3])
    window: Optional[int] = None  # None: the sweep's choice ("tuned" arm)
    cutoff: Optional[int] = None
    paper_window: int = 80  # the official setting ("paper" arm): TS-DPM-ADM README, DDIM 5 steps, CIFAR-10
    paper_cutoff: int = 300


@dataclass
class TimeShiftConfig(RootConfig):
    spacing: str = "linspace"
    clip_x0: bool = True
    guidance_scale: float = 1.0
    sweep: SweepConfig = field(default_factory=SweepConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
