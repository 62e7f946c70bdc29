"""Schema of papers/time_shift/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class SweepConfig:
    """(window, cutoff) chosen by FID on seeds disjoint from the comparison's."""

    sampler: str = REQUIRED
    nfe: int = required(ge=1)
    window: List[int] = required(ge=1, nonempty=True)
    cutoff: List[int] = required(ge=0, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class CompareConfig:
    samplers: List[str] = REQUIRED  # TS-DDIM and TS-DDPM
    nfe: List[int] = required(ge=1, nonempty=True)
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    window: Optional[int] = required(ge=1)  # None: the sweep's choice ("tuned" arm)
    cutoff: Optional[int] = required(ge=0)
    # the official setting ("paper" arm): TS-DPM-ADM README, DDIM 5 steps, CIFAR-10
    paper_window: int = required(ge=1)
    paper_cutoff: int = required(ge=0)


@dataclass
class TimeShiftConfig(RootConfig):
    spacing: str = REQUIRED
    clip_x0: bool = REQUIRED
    guidance_scale: float = required(ge=0)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
