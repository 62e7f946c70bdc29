"""Schema of papers/sing_diffusion/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import RootConfig, TrainConfig, bounded, seed_list


@dataclass
class NetConfig:
    """ybar_phi(c): class embedding -> hidden layer -> image (papers/sing_diffusion/method.py)."""

    embed_dim: int = bounded(64, ge=1)
    hidden: int = bounded(256, ge=1)


@dataclass
class NetTrainConfig(TrainConfig):
    """common.training.train settings for the SingDiffusion net (a few seconds on CPU)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 0.01
    warmup_steps: int = 0
    lr_schedule: str = "cosine"  # decays to 0: the net settles on E[x0 | c] instead of jittering around it
    ema_decay: float = 0.99
    cond_dropout: float = 0.1  # trains the null class (ybar_u) for classifier-free guidance, like the base model
    checkpoint_every: int = 1000
    log_every: int = 20


@dataclass
class GridConfig:
    """One comparison grid: every (sampler, spacing, NFE) at one guidance scale, baseline vs SingDiffusion."""

    samplers: List[str] = field(default_factory=lambda: ["ddim", "dpm_solver_2m"])
    spacings: List[str] = field(default_factory=lambda: ["leading", "linspace"])
    nfe: List[int] = bounded(factory=lambda: [5, 10], ge=1)
    guidance_scale: float = bounded(1.0, ge=0)


@dataclass
class HistogramConfig:
    """The setting whose brightness histograms (data, baseline, SingDiffusion) the report plots."""

    sampler: str = "ddim"
    spacing: str = "leading"
    nfe: int = bounded(10, ge=1)


@dataclass
class SingDiffusionConfig(RootConfig):
    net: NetConfig = field(default_factory=NetConfig)
    train: NetTrainConfig = field(default_factory=NetTrainConfig)
    clip_x0: bool = True
    normalize_guidance: bool = True  # official: ybar = (ybar_u + s (ybar_c - ybar_u)) / s for s > 1
    num_samples: int = bounded(500, ge=1)
    seeds: List[int] = seed_list(1, 2, 3)
    compare: GridConfig = field(default_factory=GridConfig)
    guided: GridConfig = field(default_factory=lambda: GridConfig(spacings=["leading"], nfe=[5], guidance_scale=3.0))
    histogram: HistogramConfig = field(default_factory=HistogramConfig)  # a `compare` setting
