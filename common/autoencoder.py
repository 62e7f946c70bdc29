"""The shared small AutoencoderKL (diffusers): LatentLPIPS's latent space and a standard-VAE baseline.

Root stage train_autoencoder (common/stages/train_autoencoder.py) trains it on MNIST 16x16 with L1
reconstruction + a small KL term and writes models/autoencoder (diffusers `save_pretrained` + meta.json with
the latent scaling factor and the reconstruction score card). Latent: 4 channels at 8x8 (one halving), why:
E-LatentLPIPS's geometric augmentations (integer shifts of up to 12.5% of the size, rotations, scaling) and a
trunk with several taps need spatial room; at 4x4 an integer shift of 12.5% rounds to 0 pixels and a 3x3 conv
sees the whole latent. 4 channels is Stable Diffusion's latent width; the KL weight keeps the latent smooth.

Latents are handled scaled, as Stable Diffusion's are: z = scaling_factor * mean(q(z|x)), with scaling_factor =
1 / std of the training latents (the role of SD1.5's 0.18215), so a distillation student's latent targets have
unit scale. `encode` / `decode` take and return images in [-1, 1].
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Tuple

import torch

STAGE = "train_autoencoder"  # the root stage that writes models/autoencoder


def build_autoencoder(net, channels: int, resolution: int, meta: bool = False):
    """A diffusers AutoencoderKL from an `autoencoder.net` config section."""
    from diffusers import AutoencoderKL

    n = len(net.block_out_channels)
    with torch.device("meta") if meta else nullcontext():
        return AutoencoderKL(in_channels=channels, out_channels=channels, down_block_types=("DownEncoderBlock2D",) * n,
                             up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(net.block_out_channels),
                             layers_per_block=net.layers_per_block, latent_channels=net.latent_channels,
                             norm_num_groups=net.norm_num_groups, sample_size=resolution)


def vae_loss(ae, x: torch.Tensor, generator: torch.Generator, kl_weight: float) -> torch.Tensor:
    """mean |x - D(z)| + kl_weight * mean_n KL(q(z|x) || N(0, I)) / dim(x), z ~ q(z|x) drawn from `generator`."""
    post = ae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=generator).to(x.device)
    z = post.mean + post.std * eps
    rec = ae.decode(z).sample
    kl = post.kl().mean() / x[0].numel()
    return (rec - x).abs().mean() + kl_weight * kl


def save_autoencoder(ae, out_dir: Path, meta: dict):
    from .atomic import atomic_dir

    with atomic_dir(out_dir) as tmp:
        ae.save_pretrained(str(tmp))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_autoencoder(cfg) -> Tuple[torch.nn.Module, dict]:
    """(AutoencoderKL in eval mode, frozen; meta with "scaling_factor") of models/autoencoder."""
    from diffusers import AutoencoderKL

    from .config import read_json, reading, require, resolve

    d = require(resolve(cfg, cfg.paths.models, "autoencoder"), STAGE, marker="meta.json")
    meta = read_json(d / "meta.json", STAGE, keys=("scaling_factor",))
    with reading(d, STAGE):
        ae = AutoencoderKL.from_pretrained(str(d)).eval().requires_grad_(False)
    return ae, meta


def encode(ae, x: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Scaled latent means [N, latent_channels, h, w] of images x in [-1, 1]."""
    return ae.encode(x).latent_dist.mean * scaling_factor


def decode(ae, z: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Images from scaled latents (differentiable: the pixel-loss path of the papers' cost comparison)."""
    return ae.decode(z / scaling_factor).sample
