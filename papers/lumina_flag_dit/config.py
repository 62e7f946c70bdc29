"""Schema of papers/lumina_flag_dit/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, RootConfig, TrainConfig, required


@dataclass
class FlagDiTNetConfig:
    """The Flag-DiT network (papers/lumina_flag_dit/method.py, FlagDiT); the full profile is Flag-DiT 600M
    (1536 wide, 16 blocks, 32 heads, patch 2)."""

    patch_size: int = required(ge=1)
    dim: int = required(ge=2)
    depth: int = required(ge=1)
    heads: int = required(ge=1)
    cap_dim: int = required(ge=1)          # width of the caption token embeddings (the paper: LLaMA's 4096)
    multiple_of: int = required(ge=1)      # SwiGLU hidden rounding (the paper: 256)
    rope_theta: float = required(gt=0)
    norm_eps: float = required(gt=0)       # RMSNorm


@dataclass
class StabilityConfig:
    """The high-learning-rate arms (QK-norm vs none) and the definitions of a spike and of divergence,
    declared before any run (claims.yaml)."""

    lr: float = required(gt=0)
    steps: int = required(ge=1)
    warmup_steps: int = required(ge=0)
    spike_factor: float = required(gt=1)     # a spike: a step's loss > factor x the median of the window before it
    spike_window: int = required(ge=1)       # steps in that window (spikes are counted from step window + warmup)
    final_share: float = required(gt=0, le=1)  # final loss = mean over this last share of the steps
    diverged_ratio: float = required(gt=0)   # diverged: non-finite, or final loss >= ratio x the first step's loss
    logit_cap: float = required(gt=0)        # max attention logit of a run that went non-finite (reported capped)


@dataclass
class EvalConfig:
    num_samples: int = required(ge=10)       # per sample set, labels 0..9 in turn
    nfe: int = required(ge=1)                # Euler steps
    shift: float = required(gt=0)            # Lumina's time shift t' = t / (t + s - s t)
    guidance_scale: float = required(ge=0)
    seeds: List[int] = required(ge=0, nonempty=True)  # sampling seeds per trained model (averaged within a unit)
    sizes: List[List[int]] = required(ge=1, nonempty=True)  # [height, width] as multiples of data.resolution
    scalings: List[str] = REQUIRED           # plain | ntk | prop | ntk+prop (rope1d model at sizes above 1x1)
    high_lr_samples: bool = REQUIRED         # also sample the high-lr models at the training size


@dataclass
class LuminaFlagDiTConfig(RootConfig):
    train_seeds: List[int] = required(ge=0, nonempty=True)  # the replication unit: init, data order, noise
    captions: List[str] = required(nonempty=True)           # the class names, one caption per label
    t_dist: str = REQUIRED                   # uniform (T2I) | lognorm (ImageNet runs)
    gate_every: int = required(ge=1)         # record the cross-attention gates every this many steps
    net: FlagDiTNetConfig = field(default_factory=FlagDiTNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # the main runs: Flag-DiT and the absolute-position DiT
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
