"""A seeded Real-ESRGAN-style degradation pipeline: HR images -> LR images, parameters drawn per sample.

Images are float tensors [N, C, H, W] in [0, 1] (C = 1 or 3; `model_to_unit` / `unit_to_model` convert
from / to the models' [-1, 1]). Every random choice of sample i (kernel, scale, noise, JPEG quality and the
noise itself) comes from its own seed `seeds[i]`, so a sample's degradation does not depend on the batch it
is in, and one seed always gives the same LR image. `degradation_seeds(seed, indices)` derives the per-sample
seeds from a run seed and dataset row indices.

The chain (Wang et al., 2021, "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW; numbers from the paper's Sec. 3 / 4.1 and the official options/train_realesrnet_x4plus.yml):
one ORDER is blur -> random resize -> noise -> JPEG; the first order always blurs, the second (only with
`second_order: true`, Real-ESRGAN's "high-order" model with n = 2) blurs with probability 0.8 and has its own
ranges; then the image is resized to (H / scale, W / scale) and the last order's JPEG is applied at that size.
Defaults that are Real-ESRGAN's (per order: first / second):
  - blur kernel size uniform over the odd sizes 7..21; isotropic / anisotropic Gaussian with probabilities
    0.45 / 0.25 (renormalised here to 0.643 / 0.357: see below); sigma ~ U[0.2, 3] / U[0.2, 1.5] per axis,
    rotation ~ U[-pi, pi];
  - resize up / down / keep with probabilities [0.2, 0.7, 0.1] / [0.3, 0.4, 0.3], scale ~ U[1, 1.5] up and
    U[0.15, 1] down (first) / U[1, 1.2] and U[0.3, 1] (second), mode uniform over area / bilinear / bicubic;
  - Gaussian noise with probability 0.5 (else Poisson), sigma ~ U[1, 30] / U[1, 25] (on the 0..255 scale),
    Poisson scale ~ U[0.05, 3] / U[0.05, 2.5], grey (the same noise on every channel) with probability 0.4;
  - JPEG quality ~ U[30, 95] (integer) both orders; scale 4.
What differs from Real-ESRGAN (simplifications, stated): no generalised-Gaussian, plateau or sinc kernels (their
probabilities are dropped and iso / aniso renormalised) and no final sinc filter; the final step is always
resize-then-JPEG (Real-ESRGAN picks that or JPEG-then-resize at random); bilinear / bicubic downsampling is
antialiased (torch `antialias=True`; Real-ESRGAN's F.interpolate aliases); JPEG is PIL's libjpeg encoder at its
default 4:2:0 chroma subsampling (Real-ESRGAN: its differentiable DiffJPEG); values are clamped to [0, 1] and
rounded to 8 bits only where JPEG needs it, as Real-ESRGAN does.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .config import bounded, unit

RESIZE_MODES = ("area", "bilinear", "bicubic")


@dataclass
class OrderConfig:
    """The ranges of one degradation order (defaults: Real-ESRGAN's FIRST order)."""

    blur_prob: float = unit(1.0)  # the first order always blurs; Real-ESRGAN's second_blur_prob is 0.8
    kernel_sizes: List[int] = bounded(factory=lambda: list(range(7, 22, 2)), ge=1, nonempty=True)  # odd sizes
    aniso_prob: float = unit(0.25 / 0.70)  # P(aniso | Gaussian): Real-ESRGAN's 0.25 / (0.45 + 0.25)
    sigma_range: List[float] = bounded(factory=lambda: [0.2, 3.0], gt=0, nonempty=True)
    resize_prob: List[float] = bounded(factory=lambda: [0.2, 0.7, 0.1], ge=0, nonempty=True)  # up, down, keep
    resize_range: List[float] = bounded(factory=lambda: [0.15, 1.5], gt=0, nonempty=True)
    gaussian_noise_prob: float = unit(0.5)  # else Poisson
    noise_range: List[float] = bounded(factory=lambda: [1.0, 30.0], ge=0, nonempty=True)  # sigma on 0..255
    poisson_scale_range: List[float] = bounded(factory=lambda: [0.05, 3.0], ge=0, nonempty=True)
    gray_noise_prob: float = unit(0.4)
    jpeg_range: List[int] = bounded(factory=lambda: [30, 95], ge=1, le=100, nonempty=True)


def second_order_defaults() -> OrderConfig:
    """Real-ESRGAN's second order: blur with p 0.8, sigma [0.2, 1.5], resize [0.3, 1.2] with p [0.3, 0.4, 0.3],
    noise [1, 25], Poisson [0.05, 2.5]."""
    return OrderConfig(blur_prob=0.8, sigma_range=[0.2, 1.5], resize_prob=[0.3, 0.4, 0.3], resize_range=[0.3, 1.2],
                       noise_range=[1.0, 25.0], poisson_scale_range=[0.05, 2.5])


@dataclass
class DegradationConfig:
    """The pipeline: `scale` (LR = HR / scale), the first order, and the second one behind `second_order`."""

    scale: int = bounded(4, ge=1)
    second_order: bool = False  # Real-ESRGAN trains with it on; off here unless a paper switches it on
    first: OrderConfig = field(default_factory=OrderConfig)
    second: OrderConfig = field(default_factory=second_order_defaults)


# --------------------------------------------------------------------------- the ops (one image [C, H, W])
def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """A size x size Gaussian kernel with covariance R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T, summing
    to 1 (isotropic: sigma_x = sigma_y). Rows index y, columns x."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    pts = torch.stack([xx, yy], -1)  # [size, size, 2] as (x, y)
    k = torch.exp(-0.5 * torch.einsum("hwi,ij,hwj->hw", pts, torch.linalg.inv(cov), pts))
    return (k / k.sum()).float()


def blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel with `kernel` (scipy.ndimage, mirror padding: any kernel size on any image size)."""
    from scipy import ndimage

    k = kernel.double().numpy()
    out = np.stack([ndimage.correlate(ch, k, mode="reflect") for ch in img.double().numpy()])
    return torch.from_numpy(out).to(img.dtype)


def resize(img: torch.Tensor, size: Tuple[int, int], mode: str) -> torch.Tensor:
    """torch interpolate to `size` (area | bilinear | bicubic, antialiased when shrinking)."""
    kw = {} if mode == "area" else {"align_corners": False, "antialias": True}
    return F.interpolate(img[None], size=size, mode=mode, **kw)[0]


def gaussian_noise(img: torch.Tensor, sigma: float, gray: bool, gen: torch.Generator) -> torch.Tensor:
    """img + N(0, sigma^2) (sigma on the [0, 1] scale); `gray`: one noise map shared by the channels."""
    c = 1 if gray else img.shape[0]
    return img + sigma * torch.randn((c, *img.shape[1:]), generator=gen, dtype=img.dtype)


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grey (OpenCV's cvtColor, which Real-ESRGAN's grey noise uses)


def poisson_noise(img: torch.Tensor, scale: float, gray: bool, gen: torch.Generator) -> torch.Tensor:
    """img + scale * (Poisson(q * v) / v - q), q = img rounded to 8 bits, v = 2^ceil(log2(#distinct values of q))
    (basicsr's generate_poisson_noise: the photon count); `gray`: the noise of the luma, shared by the channels."""
    if gray and img.shape[0] == 3:
        base = torch.einsum("c,chw->hw", torch.tensor(LUMA, dtype=img.dtype), img)[None]
    else:
        base = img
    base = (base * 255).round().clamp(0, 255) / 255
    v = 2 ** math.ceil(math.log2(max(2, len(torch.unique(base)))))
    noise = torch.poisson(base * v, generator=gen) / v - base
    return img + scale * noise


def jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    """PIL JPEG encode / decode at `quality` (clamped and rounded to 8 bits first; grey or RGB)."""
    from PIL import Image

    a = (img.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pil = Image.fromarray(a[0]) if a.shape[0] == 1 else Image.fromarray(a.transpose(1, 2, 0))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
    return torch.from_numpy(out[None] if out.ndim == 2 else out.transpose(2, 0, 1).copy())


# --------------------------------------------------------------------------- one sample's draws
def _uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def draw_order(rng: np.random.Generator, o: OrderConfig) -> dict:
    """One order's parameters: blur (or None), resize scale and mode, noise kind / level / grey, JPEG quality."""
    p: dict = {"blur": None}
    if rng.random() < o.blur_prob:
        sx = _uniform(rng, o.sigma_range)
        aniso = bool(rng.random() < o.aniso_prob)
        sy, theta = (_uniform(rng, o.sigma_range), _uniform(rng, (-math.pi, math.pi))) if aniso else (sx, 0.0)
        p["blur"] = {"size": int(rng.choice(o.kernel_sizes)), "sigma_x": sx, "sigma_y": sy, "theta": theta,
                     "aniso": aniso}
    kind = rng.choice(3, p=np.asarray(o.resize_prob) / sum(o.resize_prob))
    p["resize_scale"] = (_uniform(rng, (1.0, o.resize_range[1])), _uniform(rng, (o.resize_range[0], 1.0)), 1.0)[kind]
    p["resize_mode"] = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    gaussian = bool(rng.random() < o.gaussian_noise_prob)
    p["noise"] = ("gaussian", _uniform(rng, o.noise_range) / 255) if gaussian else \
        ("poisson", _uniform(rng, o.poisson_scale_range))
    p["gray_noise"] = bool(rng.random() < o.gray_noise_prob)
    p["jpeg_quality"] = int(rng.integers(o.jpeg_range[0], o.jpeg_range[1] + 1))
    p["noise_seed"] = int(rng.integers(2 ** 62))
    return p


def apply_order(img: torch.Tensor, p: dict, base: Tuple[int, int], final_jpeg: bool = True) -> torch.Tensor:
    """Blur -> resize to round(base * scale) -> noise -> (JPEG unless `final_jpeg` is False)."""
    if p["blur"] is not None:
        b = p["blur"]
        img = blur(img, gaussian_kernel(b["size"], b["sigma_x"], b["sigma_y"], b["theta"]))
    size = tuple(max(1, int(round(s * p["resize_scale"]))) for s in base)
    if size != tuple(img.shape[1:]):
        img = resize(img, size, p["resize_mode"])
    gen = torch.Generator().manual_seed(p["noise_seed"])
    kind, level = p["noise"]
    img = (gaussian_noise if kind == "gaussian" else poisson_noise)(img, level, p["gray_noise"], gen)
    img = img.clamp(0, 1)
    return jpeg(img, p["jpeg_quality"]) if final_jpeg else img


def degrade_one(img: torch.Tensor, seed: int, cfg: DegradationConfig) -> Tuple[torch.Tensor, dict]:
    """One HR image [C, H, W] in [0, 1] -> (LR [C, H / scale, W / scale], the parameters drawn from `seed`)."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[1:]
    lr_size = (h // cfg.scale, w // cfg.scale)
    orders = [("first", cfg.first, (h, w))] + ([("second", cfg.second, lr_size)] if cfg.second_order else [])
    params = {name: draw_order(rng, o) for name, o, _ in orders}
    params["final_mode"] = RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]
    x = img.float()
    for i, (name, _, base) in enumerate(orders):
        x = apply_order(x, params[name], base, final_jpeg=i < len(orders) - 1)
    if tuple(x.shape[1:]) != lr_size:
        x = resize(x, lr_size, params["final_mode"]).clamp(0, 1)
    return jpeg(x, params[orders[-1][0]]["jpeg_quality"]), params


def degrade(x: torch.Tensor, seeds: Sequence[int], cfg: DegradationConfig) -> Tuple[torch.Tensor, List[dict]]:
    """HR [N, C, H, W] in [0, 1] -> (LR [N, C, H / scale, W / scale] in [0, 1], per-sample parameters);
    sample i's degradation depends on x[i] and seeds[i] only."""
    if len(seeds) != x.shape[0]:
        raise ValueError(f"degrade: {x.shape[0]} images but {len(seeds)} seeds (one per sample)")
    out = [degrade_one(img, int(s), cfg) for img, s in zip(x, seeds)]
    return torch.stack([o[0] for o in out]), [o[1] for o in out]


def degradation_seeds(seed: int, indices: Sequence[int]) -> List[int]:
    """A per-sample seed for each dataset row index: the same row gets the same seed in any batch."""
    return [int(np.random.SeedSequence([int(seed), int(i), 0xDE6]).generate_state(1, dtype=np.uint64)[0] >> 1)
            for i in indices]


def model_to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (the models' range) -> [0, 1] (the pipeline's)."""
    return (x + 1) / 2


def unit_to_model(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1
