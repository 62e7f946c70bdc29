"""Reconstruction metrics per image: PSNR and SSIM (scikit-image) and LPIPS (common/perceptual.py's policy).

Inputs are float tensors [N, C, H, W] in a stated value range, by default the models' [-1, 1]
(`value_range=(0, 1)` for the degradation pipeline's images); data_range = hi - lo is passed to skimage, so
PSNR = 10 log10(data_range^2 / MSE) per image. Nothing is clipped: clip a model's output first if it overshoots.

SSIM follows Wang et al. (2004) as skimage documents it: Gaussian window sigma 1.5 (11 x 11),
use_sample_covariance=False, K1 = 0.01, K2 = 0.03, over the channels (channel_axis=0) averaged; images need
at least 11 pixels a side (32 x 32 HR patches do; 8 x 8 LR inputs do not).

LPIPS, named by its backbone in the metric key (`lpips[alex]`, `lpips[digits-cnn]`, `lpips[patches-cnn]`):
`lpips_for(cfg, channels)`. With perceptual.pixel_backbone `auto` it takes lpips[alex] when torchvision's
ImageNet AlexNet weights sit in the hub cache (nothing is downloaded); otherwise grey images get the in-repo
`lpips[digits-cnn]` (one input channel, trained on MNIST 16 x 16 digits) and RGB images the in-repo
`lpips[patches-cnn]` (common/patch_trunks.py: trained on the RGB `train` patches, root stage
train_patch_trunks). No RGB image is turned grey to fit a grey trunk. Note that AlexNet's first layers leave a
1 x 1 map on 32 x 32 inputs: lpips[alex] on tiny patches is a coarse distance.
rFID of reconstructions: common.patch_trunks.rfid (`rfid[patches-cnn]`, another trunk than the LPIPS one).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .config import UserError

SSIM_KW = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}


def _pairs(x: torch.Tensor, y: torch.Tensor):
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"recon metrics need two [N, C, H, W] batches of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    return x.detach().double().cpu().numpy(), y.detach().double().cpu().numpy()


def psnr(x: torch.Tensor, y: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """PSNR in dB per image [N] (skimage.metrics.peak_signal_noise_ratio, data_range = hi - lo); inf if equal."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pairs(x, y)
    rng = value_range[1] - value_range[0]
    with np.errstate(divide="ignore"):
        return np.array([peak_signal_noise_ratio(u, v, data_range=rng) for u, v in zip(a, b)])


def ssim(x: torch.Tensor, y: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """SSIM per image [N] (skimage.metrics.structural_similarity, Wang et al.'s constants, channel_axis=0)."""
    from skimage.metrics import structural_similarity

    a, b = _pairs(x, y)
    rng = value_range[1] - value_range[0]
    return np.array([structural_similarity(u, v, data_range=rng, channel_axis=0, **SSIM_KW) for u, v in zip(a, b)])


def lpips_for(cfg, channels: int):
    """The LPIPS distance for images with `channels` channels: `perceptual.pixel_backbone` (common.perceptual.
    pixel_lpips), except that RGB images get lpips[patches-cnn] where that choice is the grey digits trunk."""
    from .perceptual import pixel_lpips

    dist = pixel_lpips(cfg)
    if channels == 3 and dist.name == "lpips[digits-cnn]":
        from .patch_trunks import patch_lpips

        dist = patch_lpips(cfg)
    check_lpips_channels(dist, channels)
    return dist


def check_lpips_channels(dist, channels: int):
    """Refuse a trunk whose first convolution takes fewer channels than the images have."""
    first = next((m for m in dist.trunk.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is not None and channels > first.in_channels:
        raise UserError(f"{dist.name} takes {first.in_channels}-channel images, not {channels}-channel ones: "
                        "use recon_metrics.lpips_for(cfg, channels), which picks lpips[patches-cnn] for RGB")


def lpips(dist, x: torch.Tensor, y: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0),
          batch_size: int = 256) -> np.ndarray:
    """LPIPS per image [N] with `dist` (an LPIPSDistance), the inputs mapped to its [-1, 1] range first."""
    lo, hi = value_range
    check_lpips_channels(dist, x.shape[1])
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            a, b = ((t[i:i + batch_size].float() - lo) / (hi - lo) * 2 - 1 for t in (x, y))
            out.append(dist(a, b, augment=False).double().cpu().numpy())
    return np.concatenate(out)


def recon_metrics(x: torch.Tensor, y: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0),
                  lpips_dist=None) -> Dict[str, np.ndarray]:
    """{"psnr", "ssim"[, "lpips[<backbone>]"]} per image [N] of reconstructions x against references y."""
    out = {"psnr": psnr(x, y, value_range), "ssim": ssim(x, y, value_range)}
    if lpips_dist is not None:
        out[lpips_dist.name] = lpips(lpips_dist, x, y, value_range)
    return out


def summarise(metrics: Dict[str, np.ndarray]) -> Dict[str, Optional[float]]:
    """Mean per metric (PSNR: over the finite values; None if every pair was identical)."""
    out: Dict[str, Optional[float]] = {}
    for k, v in metrics.items():
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if len(v) else None
    return out
