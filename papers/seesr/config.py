"""Schema of papers/seesr/params.yaml (extends the root schema; unknown keys fail).

Shared substrate: the captioned scenes (root `scenes`), the text-conditional scene model (root `t2i`, SD-2-base's
role: frozen UNet and text encoder), the digit classifier (root `classifier`, content accuracy of SR outputs) and the RGB patch trunks (root
`patch_trunks`: lpips[patches-cnn], rfid[patches-cnn]). The degradation is common/degradations.py's first-order
Real-ESRGAN chain at its defaults (scale 4: 32x32 HR -> 8x8 LR).
"""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig, TrainConfig, required
from common.degradations import DegradationConfig


@dataclass
class TaggerConfig:
    """The tagger (RAM's role): a tiny ViT with separate q / k / v; trained on clean HR scenes (tag BCE)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    patch: int = required(ge=1, le=32)  # divides the 32x32 canvas
    dim: int = required(ge=1)
    depth: int = required(ge=1)
    heads: int = required(ge=1, le=64)  # divides dim
    embed_dim: int = required(ge=1)  # DAPE's representation embedding (RAM's image_proj: 512)


@dataclass
class DapeConfig:
    """The LoRA student on LR inputs (official options/dape.yaml: r 8 on q and v, loralib alpha 1)."""

    lora_r: int = required(ge=1)
    lora_alpha: float = required(gt=0)
    threshold: float = required(gt=0, lt=1)  # sigmoid threshold of a predicted tag (RAM: per-class, default 0.68)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class ControlConfig:
    """What SeeSR adds to the frozen T2I UNet (root `t2i`): the ControlNet's LR-embedding convs and the heads of the
    new image cross-attentions (their GroupNorm groups are the UNet's, t2i.unet.norm_num_groups)."""

    cond_channels: List[int] = required(ge=1, nonempty=True)  # ControlNet's LR embedding convs (no downsampling: 1)
    image_heads: int = required(ge=1)  # heads of the new image cross-attentions (divide every attention width)


@dataclass
class EvalConfig:
    num_images: int = required(ge=1)  # test scenes super-resolved per model
    steps: int = required(ge=1)  # DDIM steps (official: 50)
    guidance: float = required(ge=1)  # CFG scale (official 5.5)
    seed: int = required(ge=0)  # sampling noise (per-sample seeds)
    grid: int = required(ge=1)  # scenes shown in the SR figure
    batch_size: int = required(ge=1)


@dataclass
class SDConfig:
    """SD-2-base's UNet (stabilityai/stable-diffusion-2-base unet/config.json values) for the full profile."""

    block_out_channels: List[int] = required(ge=1, nonempty=True)
    attention_head_dim: List[int] = required(ge=1, nonempty=True)
    layers_per_block: int = required(ge=1)
    cross_attention_dim: int = required(ge=1)  # OpenCLIP ViT-H text width
    latent_channels: int = required(ge=1)
    sample_size: int = required(ge=1)  # 64 latent = 512 px
    image_dim: int = required(ge=1)  # RAM image_proj width (512) = the image cross-attentions' key dim
    tagger_params: int = required(ge=1)  # RAM Swin-L size, stated (not built)


@dataclass
class SeeSRConfig(RootConfig):
    arms: List[str] = required(nonempty=True)  # seesr (tags + embeddings) | no_prompt (null text, no image attention)
    train_seeds: List[int] = required(ge=0, nonempty=True)  # replication unit: DAPE LoRA seed s -> SR seed s
    num_train: int = required(ge=1)  # hq scenes degraded for training (first rows)
    num_test: int = required(ge=1)  # test scenes (held-out digits) degraded for evaluation
    degradation_seed: int = required(ge=0)  # per-sample degradation seeds derive from it and the scene index
    tagger: TaggerConfig = field(default_factory=TaggerConfig)
    dape: DapeConfig = field(default_factory=DapeConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    sr: TrainConfig = field(default_factory=TrainConfig)  # cond_dropout = the official null_text_ratio 0.5
    eval: EvalConfig = field(default_factory=EvalConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    sd: Optional[SDConfig] = None  # full profile only: SD-2-base's UNet (the paper's scale); None on cpu / tiny
