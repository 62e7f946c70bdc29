"""Schema of papers/scaling_down_clip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, ClipModelConfig, ClipTrainConfig, RootConfig, required


@dataclass
class QualityConfig:
    """Quality vs quantity (paper Sec. 3.2): top x% of the pool by teacher image-text similarity, equal samples seen."""

    # x of each subset, in %
    top_pct: List[float] = required(gt=0, le=100, nonempty=True)
    compare_pct: float = required(gt=0, le=100)  # the paper's best subset, compared with 100% (all data)
    seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class VitTowerConfig:
    """The ViT image tower (open_clip VisionTransformer) matched in FLOPs/sample to the CNN of `model`."""

    width: int = required(ge=1)
    layers: int = required(ge=1)
    patch: int = required(ge=1)
    head_width: int = required(ge=1)


@dataclass
class ArchitectureConfig:
    """CNN vs ViT at similar FLOPs (paper Sec. 5) on clean subsets of increasing size, equal samples seen."""

    sizes: List[int] = required(ge=1, nonempty=True)  # nested random subsets of `hq`
    seeds: List[int] = required(ge=0, nonempty=True)  # training seed and subset draw
    vit: VitTowerConfig = field(default_factory=VitTowerConfig)
    max_flops_ratio: float = required(ge=1)  # image-tower FLOPs/sample of ViT vs CNN must lie in [1/r, r]


@dataclass
class ScalingDownClipConfig(RootConfig):
    pool_source: Optional[str] = REQUIRED  # None: the scenes pool + teacher scores (root stages); else a WebLI export
    model: ClipModelConfig = field(default_factory=ClipModelConfig)  # every CLIP; its CNN is the CNN arm
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)  # train.samples = samples seen of every run
    quality: QualityConfig = field(default_factory=QualityConfig)
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
