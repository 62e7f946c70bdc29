"""Network builders shared by papers: diffusers UNets from params, and the metric-backbone classifier."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import UNetConfig


def build_unet(cfg: UNetConfig, resolution: int, channels: int, meta: bool = False):
    """A diffusers `UNet2DModel`; `num_classes > 0` adds a class embedding with one extra null class.

    `meta=True` builds it on the meta device: parameter counts of paper-scale networks
    without allocating them.
    """
    from diffusers import UNet2DModel

    levels = len(cfg.block_out_channels)
    if len(cfg.attention_levels) != levels:
        raise ValueError(
            f"base_model.unet.attention_levels has {len(cfg.attention_levels)} entries, "
            f"block_out_channels has {levels}: give one per level"
        )
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention_levels)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention_levels))
    ctx = torch.device("meta") if meta else nullcontext()
    with ctx:
        return UNet2DModel(
            sample_size=resolution,
            in_channels=channels,
            out_channels=channels * (2 if cfg.learn_sigma else 1),
            block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block,
            down_block_types=down,
            up_block_types=up,
            num_class_embeds=(cfg.num_classes + 1) if cfg.num_classes > 0 else None,
            dropout=cfg.dropout,
            norm_num_groups=cfg.norm_num_groups,
            attention_head_dim=cfg.attention_head_dim,
            resnet_time_scale_shift=cfg.resnet_time_scale_shift,
            downsample_type="resnet" if cfg.resblock_updown else "conv",
            upsample_type="resnet" if cfg.resblock_updown else "conv",
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Classifier(nn.Module):
    """A small CNN; its penultimate activations are the FID-style features (`features`).

    It stands in for Inception, whose weights cannot be downloaded offline (docs/decisions.md).
    Input: float images in [-1, 1], shape [N, C, H, W].
    """

    def __init__(self, in_channels: int, channels=(32, 64), feature_dim: int = 64, num_classes: int = 10):
        super().__init__()
        layers, c = [], in_channels
        for ch in channels:
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                       nn.GroupNorm(8, ch), nn.SiLU(), nn.AvgPool2d(2)]
            c = ch
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(c, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x).mean(dim=(2, 3))  # global average pool: [N, C]
        return F.silu(self.proj(h))  # [N, feature_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save_diffusion_model(unet, schedule_config: dict, out_dir, meta: dict):
    """A diffusers UNet (save_pretrained) plus the noise schedule and training metadata, atomically."""
    import json

    from .atomic import atomic_dir

    with atomic_dir(out_dir) as tmp:
        unet.save_pretrained(str(tmp))
        (tmp / "schedule.json").write_text(json.dumps(schedule_config, indent=2))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_diffusion_model(model_dir, stage: str = "train_base_model"):
    """(unet in eval mode, NoiseSchedule, meta) saved by `save_diffusion_model`.

    A missing or unreadable model names the stage that makes it: the one whose DVC outs hold `model_dir`
    (e.g. papers/ddpm_ip/dvc.yaml:train), else `stage` (the shared base model's)."""
    import json

    from diffusers import UNet2DModel

    from .config import reading, require
    from .diffusion import NoiseSchedule

    model_dir = require(model_dir, stage, marker="schedule.json")
    with reading(model_dir, stage):
        unet = UNet2DModel.from_pretrained(str(model_dir)).eval().requires_grad_(False)
    with reading(model_dir / "schedule.json", stage):
        schedule = NoiseSchedule(**json.loads((model_dir / "schedule.json").read_text()))
    with reading(model_dir / "meta.json", stage):
        meta = json.loads((model_dir / "meta.json").read_text())
    return unet, schedule, meta
