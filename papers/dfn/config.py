"""Schema of papers/dfn/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, ClipModelConfig, ClipTrainConfig, RootConfig, required


@dataclass
class FilterConfig:
    """The data filtering networks: small CLIPs with one budget, trained on hq with a share p of its
    pairs replaced by uncurated pool pairs (p = 0: the clean DFN; p > 0: the "dirty" filters of Sec. 4)."""

    dirty_shares: List[float] = required(ge=0, le=1, nonempty=True)
    seeds: List[int] = required(ge=0, nonempty=True)  # filter seed s induces the dataset of student seed s
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class HeuristicConfig:
    """Rule-based filter without a learned model (stand-in for DataComp's basic filtering), method.py."""

    rules: List[str] = REQUIRED
    # a pixel is part of a digit if its brightest channel exceeds this (uint8)
    brightness: int = required(ge=0, le=255)
    # a palette colour is present if it covers at least this many bright pixels
    min_colour_pixels: int = required(ge=0)
    min_blob_area: int = required(ge=0)  # connected bright blobs smaller than this are ignored
    dilation: int = required(ge=0)  # binary dilation steps before counting blobs (joins broken MNIST strokes)


@dataclass
class StudentConfig:
    """The same small CLIP trained at equal samples seen on each candidate dataset."""

    keep_fraction: float = required(gt=0, le=1)  # DFN-2B keeps the top 15% of CommonPool
    seeds: List[int] = required(ge=0, nonempty=True)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class DfnConfig(RootConfig):
    pool: Optional[str] = REQUIRED  # None: the shared captioned scenes (data/scenes); full: DataComp CommonPool
    filter_data: Optional[str] = REQUIRED  # None: the hq split; full: the DFN's high-quality pairs (HQITP-350M)
    metric: str = REQUIRED  # the student / filter accuracy the claims compare
    filter: FilterConfig = field(default_factory=FilterConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
