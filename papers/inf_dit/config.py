"""Schema of papers/inf_dit/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, EDMConfig, RootConfig, TrainConfig, required


@dataclass
class InfDiTNetConfig:
    """The Inf-DiT network (papers/inf_dit/method.py, InfDiT); the full profile is the official 28 x 1280 x 16
    heads, patch 4, 128-px blocks (32 x 32 tokens)."""

    patch_size: int = required(ge=1)
    dim: int = required(ge=4)
    depth: int = required(ge=1)
    heads: int = required(ge=1)
    block_tokens: int = required(ge=1)    # B: a UniBA block is B x B tokens = B p pixels a side
    sr_scale: int = required(ge=1)        # 4x super-resolution
    lr_embed_dim: int = required(ge=1)    # width of e(LR) (the official OpenCLIP image embedding: 768)
    mlp_ratio: float = required(gt=0)
    cross_lr: bool = REQUIRED             # the nearby-LR cross-attention in layer 0


@dataclass
class CanvasConfig:
    """HR images: canvases of data.resolution-px digits tiled in a grid, cropped at a random offset."""

    size: int = required(ge=1)            # training canvas side (px), a multiple of the block
    num_train: int = required(ge=1)       # training canvases, built once per training seed


@dataclass
class EvalConfig:
    num_images: int = required(ge=1)      # test canvases per size
    num_steps: int = required(ge=1)       # sampler steps (network calls per image)
    sizes: List[List[int]] = required(ge=1, nonempty=True)  # [height, width] as multiples of canvas.size
    seam_size: List[int] = required(ge=1, nonempty=True)    # the seam / PSNR / accuracy comparison's size, same units
    seeds: List[int] = required(ge=0, nonempty=True)        # sampling seeds per trained model (averaged per unit)
    check_steps: int = required(ge=1)     # sampler steps of the full-vs-ar check


@dataclass
class BenchmarkConfig:
    """Peak working memory of one network call, 'ar' vs 'full', at the sizes of `sides` (multiples of canvas.size)
    along one axis with the other fixed at `fixed` (stage `benchmark`)."""

    sides: List[int] = required(ge=1, nonempty=True)
    fixed: int = required(ge=1)
    repeats: int = required(ge=1)


@dataclass
class InfDiTConfig(RootConfig):
    train_seeds: List[int] = required(ge=0, nonempty=True)  # the replication unit: init, data, order, noise
    net: InfDiTNetConfig = field(default_factory=InfDiTNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    canvas: CanvasConfig = field(default_factory=CanvasConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
