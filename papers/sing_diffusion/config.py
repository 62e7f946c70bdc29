"""Schema of papers/sing_diffusion/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, RootConfig, TrainConfig, required


@dataclass
class NetConfig:
    """ybar_phi(c): class embedding -> hidden layer -> image (papers/sing_diffusion/method.py)."""

    embed_dim: int = required(ge=1)
    hidden: int = required(ge=1)


@dataclass
class GridConfig:
    """One comparison grid: every (sampler, spacing, NFE) at one guidance scale, baseline vs SingDiffusion."""

    samplers: List[str] = REQUIRED
    spacings: List[str] = REQUIRED
    nfe: List[int] = required(ge=1)
    guidance_scale: float = required(ge=0)


@dataclass
class HistogramConfig:
    """The setting whose brightness histograms (data, baseline, SingDiffusion) the report plots."""

    sampler: str = REQUIRED
    spacing: str = REQUIRED
    nfe: int = required(ge=1)


@dataclass
class SingDiffusionConfig(RootConfig):
    net: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # the net's common.training.train run
    clip_x0: bool = REQUIRED
    normalize_guidance: bool = REQUIRED  # official: ybar = (ybar_u + s (ybar_c - ybar_u)) / s for s > 1
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    compare: GridConfig = field(default_factory=GridConfig)
    guided: GridConfig = field(default_factory=GridConfig)
    histogram: HistogramConfig = field(default_factory=HistogramConfig)  # a `compare` setting
