"""E-LatentLPIPS's differentiable augmentation (Kang et al., ECCV 2024): one random transform per sample, the same to both inputs.

The "ensemble" of E-LatentLPIPS is not an average over K transforms: each call draws one ADA transform per
sample (Karras et al. 2020) and applies it identically to the two latents being compared, so over training the
distance is averaged over the augmentation distribution. `common.perceptual.latent_lpips` puts it in front of
LatentLPIPS. The draws are made per batch from one generator, so a sample's transform depends on its position in
the batch: this is a training loss, not an evaluation metric, so it does not need per-sample seeding.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

# After the ADA pipeline (Karras et al. 2020) as mingukkang/elatentlpips uses it (`ada_aug.py` AdaAugment): per
# sample an inverse homogeneous 2-D transform G_inv is composed from b (x-flip, 90-degree rotation, integer shift
# U(+-0.125) x size) and g (iso scale 2^N(0, 0.2^2), pre-rotation U(-pi, pi), aniso scale, post-rotation,
# fractional shift N(0, 0.125^2) x size), executed once as reflect-pad -> sym6 2x upsampling -> bilinear
# grid_sample -> sym6 2x downsampling; then colour (brightness +U(-.5, .5), contrast about the all-channel mean
# x U(.5, 1.5), saturation about the channel mean x U(0, 2); the official code has no hue op, nor has this one)
# and cutout (a 0.5 x 0.5 box zeroed). Every op is on with probability 1 (E-LatentLPIPS sets p = 1). Draws follow
# the official order from a CPU generator (None = torch's global RNG, as the official code), so a run seeded like
# the official one gives the same transform; `debug_percentile` fixes every parameter at a percentile (the
# op-by-op reference check in tests/common/test_perceptual.py, numbers frozen from the official code).

# The presets of the official code (elatentlpips.py `ada_augpipe`): b = blit, g = geometric, c = colour, o = cutout.
PRESETS: Dict[str, Dict[str, float]] = {
    "b": dict(xflip=1, rotate90=1, xint=1),
    "g": dict(scale=1, rotate=1, aniso=1, xfrac=1),
    "c": dict(brightness=1, contrast=1, saturation=1),
    "o": dict(cutout=1),
    "co": dict(brightness=1, contrast=1, saturation=1, cutout=1),
    "bg": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    "bgc": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                saturation=1),
    "bgco": dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                 saturation=1, cutout=1),
}
OPS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast", "saturation",
       "cutout")

# The symlet-6 decomposition low-pass filter (12 taps, the standard wavelet table also used by ADA).
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633, 0.4910559419267466,
        0.787641141030194, 0.3379294217276218, -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
        0.0017677118642428036, -0.007800708325034148)


# --------------------------------------------------------------------------- FIR resampling
def _fir(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad) -> torch.Tensor:
    """Zero-insertion upsampling by `up`, padding (x0, x1, y0, y1; negative = crop), separable convolution with
    the 1-D filter f (flipped: a true convolution), then keeping every `down`-th pixel."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h, up, w, up)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    k = f.flip(0).to(x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


def upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x upsampling with low-pass f (gain 4 spread over the two separable passes); output 2H x 2W."""
    t = f.numel()
    p = [(t + 1) // 2, (t - 2) // 2] * 2
    return _fir(x, f * 2, 2, 1, p)


def downsample2x(x: torch.Tensor, f: torch.Tensor, crop: int) -> torch.Tensor:
    """2x downsampling with low-pass f applied as a correlation, `crop` output pixels removed on each side."""
    t = f.numel()
    p = [(t - 1) // 2 - crop, (t - 2) // 2 - crop] * 2
    return _fir(x, f.flip(0), 1, 2, p)


# --------------------------------------------------------------------------- homogeneous 2-D matrices [B, 3, 3]
def _mat(rows, b: int, device) -> torch.Tensor:
    cols = [torch.as_tensor(v, dtype=torch.float32, device=device).expand(b) for row in rows for v in row]
    return torch.stack(cols, dim=-1).reshape(b, 3, 3)


def translate(tx, ty, b, device):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]], b, device)


def scale(sx, sy, b, device):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], b, device)


def rotate(theta, b, device):
    theta = torch.as_tensor(theta, dtype=torch.float32, device=device)
    return _mat([[torch.cos(theta), -torch.sin(theta), 0], [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1]],
                b, device)


class DiffAugment(torch.nn.Module):
    """T(x0), T(x1) with one random T per sample (see the module docstring). `ops`: {name: probability multiplier},
    e.g. `PRESETS["bg"]`; the ranges are the official defaults."""

    def __init__(self, ops: Dict[str, float], xint_max=0.125, scale_std=0.2, rotate_max=1.0, aniso_std=0.2,
                 xfrac_std=0.125, cutout_size=0.5):
        super().__init__()
        unknown = set(ops) - set(OPS)
        if unknown:
            raise ValueError(f"unknown augmentation ops {sorted(unknown)} (known: {OPS})")
        self.p = {k: float(ops.get(k, 0.0)) for k in OPS}
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std, self.cutout_size = aniso_std, xfrac_std, cutout_size
        self.register_buffer("filter", torch.tensor(SYM6, dtype=torch.float32) / sum(SYM6), persistent=False)

    @classmethod
    def preset(cls, name: str) -> DiffAugment:
        if name not in PRESETS:
            raise ValueError(f"unknown augmentation preset {name!r} (one of {sorted(PRESETS)})")
        return cls(PRESETS[name])

    # ----------------------------------------------------------------- draws (official order)
    def _geometry(self, b: int, h: int, w: int, g, q, dev) -> Optional[torch.Tensor]:
        """G_inv [B, 3, 3] (output pixel -> input pixel), or None when no geometric op is on."""
        rand = lambda *s: torch.rand(s, generator=g).to(dev)  # noqa: E731
        randn = lambda *s: torch.randn(s, generator=g).to(dev)  # noqa: E731
        gi, on = torch.eye(3, device=dev).expand(b, 3, 3), False

        def gate(v, p, ident, shape=(b,)):
            return torch.where(rand(*shape) < p, v, ident)

        if self.p["xflip"] > 0:
            i = gate(torch.floor(rand(b) * 2), self.p["xflip"], torch.zeros(b, device=dev))
            i = torch.full_like(i, math.floor(q * 2)) if q is not None else i
            gi, on = gi @ scale(1 / (1 - 2 * i), 1, b, dev), True
        if self.p["rotate90"] > 0:
            i = gate(torch.floor(rand(b) * 4), self.p["rotate90"], torch.zeros(b, device=dev))
            i = torch.full_like(i, math.floor(q * 4)) if q is not None else i
            gi, on = gi @ rotate(np.pi / 2 * i, b, dev), True
        if self.p["xint"] > 0:
            t = (rand(b, 2) * 2 - 1) * self.xint_max
            t = torch.where(rand(b, 1) < self.p["xint"], t, torch.zeros_like(t))
            t = torch.full_like(t, (q * 2 - 1) * self.xint_max) if q is not None else t
            gi, on = gi @ translate(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h), b, dev), True
        if self.p["scale"] > 0:
            s = gate(torch.exp2(randn(b) * self.scale_std), self.p["scale"], torch.ones(b, device=dev))
            s = torch.full_like(s, 2 ** (_erfinv(q * 2 - 1) * self.scale_std)) if q is not None else s
            gi, on = gi @ scale(1 / s, 1 / s, b, dev), True
        p_rot = 1 - math.sqrt(min(max(1 - self.p["rotate"], 0.0), 1.0))  # P(pre or post) = p
        if self.p["rotate"] > 0:
            th = gate((rand(b) * 2 - 1) * np.pi * self.rotate_max, p_rot, torch.zeros(b, device=dev))
            th = torch.full_like(th, (q * 2 - 1) * np.pi * self.rotate_max) if q is not None else th
            gi, on = gi @ rotate(th, b, dev), True
        if self.p["aniso"] > 0:
            s = gate(torch.exp2(randn(b) * self.aniso_std), self.p["aniso"], torch.ones(b, device=dev))
            s = torch.full_like(s, 2 ** (_erfinv(q * 2 - 1) * self.aniso_std)) if q is not None else s
            gi, on = gi @ scale(1 / s, s, b, dev), True
        if self.p["rotate"] > 0:
            th = gate((rand(b) * 2 - 1) * np.pi * self.rotate_max, p_rot, torch.zeros(b, device=dev))
            th = torch.zeros_like(th) if q is not None else th
            gi = gi @ rotate(th, b, dev)
        if self.p["xfrac"] > 0:
            t = randn(b, 2) * self.xfrac_std
            t = torch.where(rand(b, 1) < self.p["xfrac"], t, torch.zeros_like(t))
            t = torch.full_like(t, _erfinv(q * 2 - 1) * self.xfrac_std) if q is not None else t
            gi, on = gi @ translate(-t[:, 0] * w, -t[:, 1] * h, b, dev), True
        return gi if on else None

    # ----------------------------------------------------------------- execution
    def _warp(self, x: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        """Execute G_inv on x [B, C', H, W] (both inputs stacked along channels: the same warp for both)."""
        b, _, h, w = x.shape
        dev = x.device
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev).t()
        cp = gi @ corners  # [B, 3, 4]
        pad = self.filter.numel() // 4
        m = cp[:, :2, :].permute(1, 0, 2).flatten(1)
        m = torch.cat([-m, m]).max(dim=1).values + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, device=dev)
        m = m.clamp(min=0).min(torch.tensor([w - 1, h - 1] * 2, dtype=m.dtype, device=dev))
        mx0, my0, mx1, my1 = (int(v) for v in m.ceil().to(torch.int32))
        x = F.pad(x, [mx0, mx1, my0, my1], mode="reflect")
        gi = translate((mx0 - mx1) / 2, (my0 - my1) / 2, b, dev) @ gi
        x = upsample2x(x, self.filter)
        gi = scale(2, 2, b, dev) @ gi @ scale(0.5, 0.5, b, dev)
        gi = translate(-0.5, -0.5, b, dev) @ gi @ translate(0.5, 0.5, b, dev)
        shape = [b, x.shape[1], (h + pad * 2) * 2, (w + pad * 2) * 2]
        gi = scale(2 / x.shape[3], 2 / x.shape[2], b, dev) @ gi @ scale(shape[3] / 2, shape[2] / 2, b, dev)
        grid = F.affine_grid(gi[:, :2, :], shape, align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return downsample2x(x, self.filter, pad * 2)

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
                debug_percentile: Optional[float] = None):
        """(T x0, T x1) for x0, x1 [B, C, H, W]; T drawn once per sample."""
        if x0.shape != x1.shape or x0.dim() != 4:
            raise ValueError(f"DiffAugment takes two [B, C, H, W] tensors of one shape, got {x0.shape}, {x1.shape}")
        b, c, h, w = x0.shape
        dev, q = x0.device, debug_percentile
        gi = self._geometry(b, h, w, generator, q, dev)
        if gi is not None:
            x0, x1 = self._warp(torch.cat([x0, x1], dim=1), gi).split(c, dim=1)
        rand = lambda *s: torch.rand(s, generator=generator).to(dev).to(x0.dtype)  # noqa: E731
        if self.p["brightness"] > 0:
            r = rand(b, 1, 1, 1) - 0.5
            x0, x1 = x0 + r, x1 + r
        if self.p["contrast"] > 0:
            r = rand(b, 1, 1, 1) + 0.5
            x0, x1 = ((x - x.mean(dim=[1, 2, 3], keepdim=True)) * r + x.mean(dim=[1, 2, 3], keepdim=True)
                      for x in (x0, x1))
        if self.p["saturation"] > 0 and c > 1:
            r = rand(b, 1, 1, 1) * 2
            x0, x1 = ((x - x.mean(dim=1, keepdim=True)) * r + x.mean(dim=1, keepdim=True) for x in (x0, x1))
        if self.p["cutout"] > 0:
            mask = self._cutout(b, h, w, generator, q, dev).to(x0.dtype)
            x0, x1 = x0 * mask, x1 * mask
        return x0, x1

    def _cutout(self, b, h, w, g, q, dev) -> torch.Tensor:
        size = torch.full((b, 2, 1, 1, 1), self.cutout_size, device=dev)
        size = torch.where(torch.rand((b, 1, 1, 1, 1), generator=g).to(dev) < self.p["cutout"], size,
                           torch.zeros_like(size))
        center = torch.rand((b, 2, 1, 1, 1), generator=g).to(dev)
        if q is not None:
            size, center = torch.full_like(size, self.cutout_size), torch.full_like(center, q)
        cx = torch.arange(w, device=dev).reshape(1, 1, 1, -1)
        cy = torch.arange(h, device=dev).reshape(1, 1, -1, 1)
        keep_x = ((cx + 0.5) / w - center[:, 0]).abs() >= size[:, 0] / 2
        keep_y = ((cy + 0.5) / h - center[:, 1]).abs() >= size[:, 1] / 2
        return torch.logical_or(keep_x, keep_y)


def _erfinv(v: float) -> float:
    return float(torch.erfinv(torch.tensor(v, dtype=torch.float32)))
