"""Perceptual distances with the `lpips` package's machinery on trunks trained here, and E-LatentLPIPS's augmentation.

LPIPS structure (Zhang et al. 2018; `lpips.LPIPS.forward`): for taps f_l of a frozen trunk,
    d(x0, x1) = sum_l mean_hw w_l . (n(f_l(x0)) - n(f_l(x1)))^2,   n(f) = f / ||f||_channels  (lpips.normalize_tensor)
with 1x1 heads w_l (lpips.NetLinLayer) and lpips.spatial_average. LatentLPIPS (Kang et al., ECCV 2024) runs the
same structure on an autoencoder's latents with a trunk trained on latents; E-LatentLPIPS applies one random
differentiable augmentation per sample, the same to both inputs (`DiffAugment`), and adds mean|x0 - x1| computed
before the augmentation (the official `add_l1_loss=True`).

Backbones. The official weights (LPIPS's ImageNet AlexNet/VGG calibrated on BAPPS 2AFC judgements; the latent
VGG16-BN trained on ImageNet latents) cannot be downloaded here, and no human 2AFC data exists offline, so the
root stage `train_perceptual` trains two small trunks on the *training* split, class-supervised (digit labels,
cross-entropy), as the official latent VGG was trained by classification:
  - `lpips[digits-cnn]`: a pixel-space CNN on MNIST 16x16 images;
  - `latent-lpips[digits-ae]` / `e-latent-lpips[digits-ae]`: a CNN on the latents of the shared AutoencoderKL
    (root stage train_autoencoder), its first pools removed as the official latent VGG's are.
The linear heads are unit weights (w_l = 1, frozen: no calibration data; a trainable unclamped head is the
official repo's "negative loss" issue). Where torchvision's ImageNet AlexNet / VGG16 weights already sit in the
user's torch hub cache (`hub_weights` looks, never downloads), `perceptual.pixel_backbone: auto` uses the
standard `lpips.LPIPS(net='alex')` instead, named `lpips[alex]`.

IMPORTANT: neither trunk is the metric backbone models/classifier, nor shares its weights or initialisation. The
papers train students against these losses and report FID in the classifier's feature space; a loss optimised
in the evaluation's own feature space would bias every FID. Both trunks are still class-supervised on the same
digits, so some alignment with the evaluation features remains; the papers' MSE arms are the control.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- E-LatentLPIPS's augmentation
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


# --------------------------------------------------------------------------- trunks
class TapNet(torch.nn.Module):
    """A VGG-style trunk: slices of (conv 3x3, BatchNorm, ReLU) x convs, each ending in a 2x2 max-pool or an
    Identity (the official latent VGG16-BN removes its first three pools); the taps are the slices' outputs.
    `classify` (global average pool + linear) is the training head only; the distance never uses it."""

    def __init__(self, in_channels: int, channels: Sequence[int], convs: Sequence[int], pools: Sequence[bool],
                 num_classes: int = 10):
        super().__init__()
        if not len(channels) == len(convs) == len(pools):
            raise ValueError(f"TapNet: channels {list(channels)}, convs {list(convs)} and pools {list(pools)} "
                             "need one entry per slice")
        self.channels, slices, c = list(channels), [], in_channels
        for ch, n, pool in zip(channels, convs, pools):
            layers = []
            for _ in range(n):
                layers += [torch.nn.Conv2d(c, ch, 3, padding=1), torch.nn.BatchNorm2d(ch), torch.nn.ReLU()]
                c = ch
            layers.append(torch.nn.MaxPool2d(2, 2) if pool else torch.nn.Identity())
            slices.append(torch.nn.Sequential(*layers))
        self.slices = torch.nn.ModuleList(slices)
        self.head = torch.nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        taps = []
        for s in self.slices:
            x = s(x)
            taps.append(x)
        return taps

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(x)[-1].mean(dim=(2, 3)))


def latent_vgg16_bn(latent_channels: int, meta: bool = False) -> TapNet:
    """The official E-LatentLPIPS trunk's layout (VGG16-BN, first conv on the latent channels, first 3 pools
    removed): taps 64, 128, 256 at the latent's size, 512 at 1/2 and 512 at 1/4 (a 64^2 latent: 64^2, 64^2, 64^2,
    32^2, 16^2). For the full profile and the tap-shape check; nothing here trains it."""
    with torch.device("meta") if meta else nullcontext():
        return TapNet(latent_channels, [64, 128, 256, 512, 512], [2, 2, 3, 3, 3], [False, False, False, True, True],
                      num_classes=1000)


# --------------------------------------------------------------------------- the distance
class LPIPSDistance(torch.nn.Module):
    """d(x0, x1) per sample [N] with the LPIPS structure over `trunk`'s taps (see the module docstring); frozen.

    heads: None = unit weights (w_l = 1), or a list of lpips.NetLinLayer (calibrated heads, e.g. lpips.LPIPS's).
    preprocess: applied to both inputs first (lpips' ScalingLayer, a channel repeat for grey images).
    augment: a `DiffAugment` (E-LatentLPIPS) applied to both inputs with one draw per sample; `l1`: add
    mean|x0 - x1| computed before the augmentation (the official `add_l1_loss`).
    """

    def __init__(self, trunk: torch.nn.Module, channels: Sequence[int], name: str, heads=None, preprocess=None,
                 augment: Optional[DiffAugment] = None, l1: bool = False):
        import lpips

        super().__init__()
        self.trunk, self.name, self.augment, self.l1 = trunk, name, augment, l1
        self.preprocess = preprocess or torch.nn.Identity()
        if heads is None:
            heads = [lpips.NetLinLayer(c, use_dropout=False) for c in channels]
            for h in heads:
                torch.nn.init.ones_(h.model[-1].weight)
        self.heads = torch.nn.ModuleList(heads)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        """Always in eval mode: BatchNorm statistics and the heads stay fixed (a loss, never a trained module)."""
        return super().train(False)

    def layers(self, x0: torch.Tensor, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
               augment: bool = True) -> List[torch.Tensor]:
        """The per-layer terms mean_hw w_l . (n(f_l(x0)) - n(f_l(x1)))^2, each [N]."""
        import lpips

        if augment and self.augment is not None:
            x0, x1 = self.augment(x0, x1, generator)
        f0, f1 = self.trunk(self.preprocess(x0)), self.trunk(self.preprocess(x1))
        return [lpips.spatial_average(h((lpips.normalize_tensor(a) - lpips.normalize_tensor(b)) ** 2)).flatten()
                for h, a, b in zip(self.heads, f0, f1)]

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
                augment: bool = True) -> torch.Tensor:
        d = torch.stack(self.layers(x0, x1, generator, augment)).sum(0)
        if self.l1:
            d = d + (x0 - x1).abs().mean(dim=(1, 2, 3))
        return d


class GreyToRGB(torch.nn.Module):
    """Grey images [N, 1, H, W] in [-1, 1] -> 3 channels, then lpips' ScalingLayer (ImageNet trunks)."""

    def __init__(self):
        import lpips

        super().__init__()
        self.scaling = lpips.ScalingLayer()

    def forward(self, x):
        return self.scaling(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


# --------------------------------------------------------------------------- ImageNet trunks in the hub cache
HUB_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}


def hub_weights(net: str) -> Optional[Path]:
    """The cached torchvision ImageNet weights file of `net` ('alex' | 'vgg') if present, else None; never downloads."""
    import torchvision

    url = getattr(torchvision.models, HUB_WEIGHTS[net]).IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def standard_lpips(net: str) -> LPIPSDistance:
    """lpips.LPIPS(net=...) with its calibrated heads, as an `LPIPSDistance` (`lpips[alex]`); the trunk's weights
    must be in the hub cache (`hub_weights`)."""
    import lpips

    if hub_weights(net) is None:
        raise FileNotFoundError(f"torchvision's ImageNet {net} weights are not in {torch.hub.get_dir()}/checkpoints "
                                "(nothing is downloaded here): use perceptual.pixel_backbone: digits-cnn")
    ref = lpips.LPIPS(net=net, pretrained=True, verbose=False)
    return LPIPSDistance(ref.net, ref.chns, f"lpips[{net}]", heads=list(ref.lins), preprocess=GreyToRGB())


# --------------------------------------------------------------------------- trunks trained here, on disk
STAGE = "train_perceptual"  # the root stage that writes models/perceptual
PIXEL, LATENT = "pixel", "latent"


def build_trunk(in_channels: int, net, meta: bool = False) -> TapNet:
    """A TapNet from a `perceptual.pixel` / `perceptual.latent` config section."""
    with torch.device("meta") if meta else nullcontext():
        return TapNet(in_channels, net.channels, net.convs, net.pools)


def save_trunk(trunk: TapNet, out_dir: Path, meta: dict):
    """weights.pt + meta.json (in_channels, config, name, score card), atomically."""
    from .atomic import atomic_dir

    with atomic_dir(out_dir) as tmp:
        torch.save(trunk.state_dict(), tmp / "weights.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_trunk(cfg, kind: str) -> Tuple[TapNet, dict]:
    """(trunk in eval mode, its meta) of models/perceptual/<kind> (kind: 'pixel' | 'latent')."""
    from .config import read_json, reading, require, resolve

    d = require(resolve(cfg, cfg.paths.models, "perceptual", kind), STAGE, marker="weights.pt")
    meta = read_json(d / "meta.json", STAGE, keys=("in_channels", "net", "name"))
    net = SimpleNamespace(**meta["net"])
    trunk = build_trunk(meta["in_channels"], net)
    with reading(d / "weights.pt", STAGE):
        trunk.load_state_dict(torch.load(d / "weights.pt", map_location="cpu"))
    return trunk.eval(), meta


def pixel_lpips(cfg) -> LPIPSDistance:
    """The pixel LPIPS of `perceptual.pixel_backbone`: 'auto' (lpips[alex] where its ImageNet weights are cached,
    else the digits CNN), 'alex' / 'vgg' (standard LPIPS; fails without cached weights) or 'digits-cnn'."""
    choice = cfg.perceptual.pixel_backbone
    if choice in HUB_WEIGHTS or (choice == "auto" and hub_weights("alex") is not None):
        return standard_lpips("alex" if choice == "auto" else choice)
    if choice not in ("auto", "digits-cnn"):
        raise ValueError(f"perceptual.pixel_backbone = {choice!r}: one of auto, digits-cnn, alex, vgg")
    trunk, meta = load_trunk(cfg, PIXEL)
    return LPIPSDistance(trunk, trunk.channels, meta["name"])


def latent_lpips(cfg, ensemble: bool = True, preset: Optional[str] = None, l1: Optional[bool] = None) -> LPIPSDistance:
    """LatentLPIPS on the shared autoencoder's scaled latents; `ensemble`: E-LatentLPIPS with the augmentation
    `preset` (default `perceptual.augment`, the official 'bg') and the latent L1 term (default `perceptual.latent_l1`)."""
    pc = cfg.perceptual
    trunk, meta = load_trunk(cfg, LATENT)
    aug = DiffAugment.preset(preset or pc.augment) if ensemble else None
    name = ("e-" if ensemble else "") + meta["name"]
    return LPIPSDistance(trunk, trunk.channels, name, augment=aug, l1=pc.latent_l1 if l1 is None else l1)
