"""Schema of papers/litevae/params.yaml (extends the root schema; unknown keys fail).

The data are the shared real-image patches (root `patches`, stage prepare_patches) and the perceptual trunks of
lpips[patches-cnn] / rfid[patches-cnn] (root `patch_trunks`, stage train_patch_trunks).
"""

from dataclasses import dataclass, field
from typing import List

from common.config import AutoencoderNetConfig, RootConfig, TrainConfig, required


@dataclass
class UNetSpecConfig:
    """A light UNet (method.LightUNet): width C, channel multipliers, residual blocks per stage, GroupNorm groups."""

    channels: int = required(ge=1)
    mult: List[int] = required(ge=1, nonempty=True)
    blocks: int = required(ge=1)
    groups: int = required(ge=1)


@dataclass
class EncoderConfig:
    """LiteVAE's wavelet encoder: L Haar levels (downsampling factor 2^L), F_l per level, F_agg."""

    levels: int = required(ge=1)
    extractor: UNetSpecConfig = field(default_factory=UNetSpecConfig)
    aggregator: UNetSpecConfig = field(default_factory=UNetSpecConfig)


@dataclass
class LossConfig:
    """Eq. (5) weights (L1 has weight 1): open-litevae's KL / wavelet / Gaussian values; LPIPS weight 1 (LDM's)."""

    lpips: float = required(ge=0)
    kl: float = required(ge=0)  # on the per-dimension KL (common.autoencoder.vae_loss's normalisation)
    wave: float = required(ge=0)
    gauss: float = required(ge=0)
    gauss_sigma: float = required(gt=0)  # G of the high-pass x - G * x (our choice: unstated in paper and code)
    gauss_kernel: int = required(ge=3)


@dataclass
class EvalConfig:
    batch_size: int = required(ge=1)
    grid: int = required(ge=1)  # held-out inputs shown beside their reconstructions


@dataclass
class BenchmarkConfig:
    """Encoder throughput, LiteVAE vs the VAE encoder, interleaved rounds in one run."""

    batch_size: int = required(ge=1)
    rounds: int = required(ge=3)  # the replication unit of the speed claim
    repeats: int = required(ge=1)  # timed calls per round and contender
    warmup: int = required(ge=0)


@dataclass
class LiteVAEConfig(RootConfig):
    arms: List[str] = required(nonempty=True)  # of method.ARMS
    train_seeds: List[int] = required(ge=0, nonempty=True)  # replication unit
    image_size: int = required(ge=8)  # training / evaluation resolution (cpu: the patches' 32)
    vae: AutoencoderNetConfig = field(default_factory=AutoencoderNetConfig)  # the VAE arm; its decoder is every arm's
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
