"""Schema of papers/dfn/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import ClipModelConfig, ClipTrainConfig, RootConfig, bounded, seed_list, unit


@dataclass
class FilterConfig:
    """The data filtering networks: small CLIPs with one budget, trained on hq with a share p of its
    pairs replaced by uncurated pool pairs (p = 0: the clean DFN; p > 0: the "dirty" filters of Sec. 4)."""

    dirty_shares: List[float] = unit(factory=lambda: [0.0, 0.5, 0.9], nonempty=True)
    seeds: List[int] = seed_list(0, 1, 2)  # filter seed s induces the dataset of student seed s
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class HeuristicConfig:
    """Rule-based filter without a learned model (stand-in for DataComp's basic filtering), method.py."""

    rules: List[str] = field(default_factory=lambda: ["colour", "count"])
    # a pixel is part of a digit if its brightest channel exceeds this (uint8)
    brightness: int = bounded(100, ge=0, le=255)
    # a palette colour is present if it covers at least this many bright pixels
    min_colour_pixels: int = bounded(6, ge=0)
    min_blob_area: int = bounded(4, ge=0)  # connected bright blobs smaller than this are ignored
    dilation: int = bounded(1, ge=0)  # binary dilation steps before counting blobs (joins broken MNIST strokes)


@dataclass
class StudentConfig:
    """The same small CLIP trained at equal samples seen on each candidate dataset."""

    keep_fraction: float = bounded(0.15, gt=0, le=1)  # DFN-2B keeps the top 15% of CommonPool
    seeds: List[int] = seed_list(0, 1, 2)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class DfnConfig(RootConfig):
    pool: Optional[str] = None  # None: the shared captioned scenes (data/scenes); full: DataComp CommonPool
    filter_data: Optional[str] = None  # None: the hq split; full: the DFN's high-quality pairs (HQITP-350M)
    metric: str = "zero_shot_mean"  # the student / filter accuracy the claims compare
    filter: FilterConfig = field(default_factory=FilterConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
