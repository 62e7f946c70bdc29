"""LiteVAE (Sadat et al., NeurIPS 2024): a wavelet encoder for the latent-diffusion autoencoder, and SMC.

The paper has no official code; what is the paper's and what is our reconstruction is listed in README.md.

Encoder (Sec. 3, Fig. 2):
    LL_0 = x;  (LL_l, LH_l, HL_l, HH_l) = DWT(LL_{l-1}),  X_l = [LL_l, LH_l, HL_l, HH_l]  (12 channels for RGB)  (1)
    h_l = Pool_l(F_l(X_l))                  F_l: a light UNet per level, Pool_l to the latent size H / 2^L   (2)
    (mu, log sigma^2) = F_agg(cat_l h_l)    the aggregator UNet -> 2 n_z channels                           (3)
The DWT is the Haar transform in pywavelets' convention (one library pinned: band order cA, (cH, cV, cD), the
2x2 case [[a, b], [c, d]] -> ((a+b+c+d), (a+b-c-d), (a-b+c-d), (a-b-c+d)) / 2), computed here in torch so that
it is batched and differentiable (the high-frequency loss needs it on the reconstruction).

Decoder: the standard SD-VAE decoder (diffusers' `Decoder`), or, behind a switch, the same decoder with every
GroupNorm + Conv pair replaced by a self-modulated convolution (Sec. 3.3)
    w_hat_{o,i,k} = s_i w_{o,i,k} / sqrt(sum_{i,k} (s_i w_{o,i,k})^2 + eps)      s in R^{C_in}, init 1       (4)
and no normalisation layer: GroupNorm makes a few channels carry very large magnitudes; SMC keeps the
per-filter weight norm fixed and lets the learned s rebalance the input channels.

Loss (pre-training phase, no discriminator):
    L = |x - x_hat|_1 + w_lpips LPIPS(x, x_hat) + w_kl KL(q(z|x) || N(0, I)) / dim(x)
        + w_wave sum_l |high bands DWT_l(x) - DWT_l(x_hat)|_1 + w_gauss |(x - G*x) - (x_hat - G*x_hat)|_1     (5)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ARMS = ("vae", "litevae", "litevae_smc")


# --------------------------------------------------------------------------- the Haar DWT (pywavelets convention)
def dwt2(x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One level of `pywt.dwt2(x, 'haar')` over the last two axes: [.., H, W] -> cA, (cH, cV, cD) at [.., H/2, W/2].
    H and W must be even (pywt pads odd sizes; we never feed odd ones)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, ((a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2)


def idwt2(cA: torch.Tensor, bands: Sequence[torch.Tensor]) -> torch.Tensor:
    """The inverse of `dwt2` (`pywt.idwt2(..., 'haar')`): the Haar matrix is orthogonal and its own inverse."""
    cH, cV, cD = bands
    out = cA.new_empty(*cA.shape[:-2], 2 * cA.shape[-2], 2 * cA.shape[-1])
    out[..., 0::2, 0::2] = (cA + cH + cV + cD) / 2
    out[..., 0::2, 1::2] = (cA + cH - cV - cD) / 2
    out[..., 1::2, 0::2] = (cA - cH + cV - cD) / 2
    out[..., 1::2, 1::2] = (cA - cH - cV + cD) / 2
    return out


def wavedec2(x: torch.Tensor, levels: int) -> list:
    """`pywt.wavedec2(x, 'haar', level=levels)`: [cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)]."""
    coeffs, ll = [], x
    for _ in range(levels):
        ll, bands = dwt2(ll)
        coeffs.insert(0, bands)
    return [ll, *coeffs]


def waverec2(coeffs: list) -> torch.Tensor:
    """`pywt.waverec2(coeffs, 'haar')`."""
    x = coeffs[0]
    for bands in coeffs[1:]:
        x = idwt2(x, bands)
    return x


def dwt_features(x: torch.Tensor, levels: int) -> List[torch.Tensor]:
    """Eq. (1): X_l = [LL_l, LH_l, HL_l, HH_l] for l = 1..L, each [N, 4C, H/2^l, W/2^l] (band-major channels)."""
    out, ll = [], x
    for _ in range(levels):
        ll, bands = dwt2(ll)
        out.append(torch.cat([ll, *bands], dim=1))
    return out


# --------------------------------------------------------------------------- the light UNets F_l and F_agg
@dataclass
class UNetSpec:
    """Width C, channel multipliers (one stage each), residual blocks per stage, GroupNorm groups."""

    channels: int
    mult: Sequence[int]
    blocks: int
    groups: int


class ResBlock(nn.Module):
    """(conv 3x3, GroupNorm, SiLU) x 2 + a residual (1x1 projection when the width changes)."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU())
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        return self.body(x) + self.skip(x)


class LightUNet(nn.Module):
    """A UNet whose stages change the WIDTH only (1x1 convolutions), never the resolution: the DWT already did the
    downsampling (the layout of open-litevae's extractor/aggregator). Skips join each up stage's blocks."""

    def __init__(self, c_in: int, c_out: int, spec: UNetSpec):
        super().__init__()
        dims, g, n = [m * spec.channels for m in spec.mult], spec.groups, spec.blocks
        self.conv_in = nn.Conv2d(c_in, dims[0], 3, padding=1)
        self.down = nn.ModuleList(nn.ModuleList([*(ResBlock(a, a, g) for _ in range(n)), nn.Conv2d(a, b, 1)])
                                  for a, b in zip(dims[:-1], dims[1:]))
        self.mid = nn.Sequential(*(ResBlock(dims[-1], dims[-1], g) for _ in range(n)))
        self.up = nn.ModuleList(nn.ModuleList([nn.Conv2d(b, a, 1), *(ResBlock(2 * a, a, g) for _ in range(n))])
                                for a, b in zip(dims[-2::-1], dims[:0:-1]))
        self.conv_out = nn.Conv2d(dims[0], c_out, 1)

    def forward(self, x):
        h, skips = self.conv_in(x), []
        for stage in self.down:
            for block in stage[:-1]:
                h = block(h)
                skips.append(h)
            h = stage[-1](h)
        h = self.mid(h)
        for stage in self.up:
            h = stage[0](h)
            for block in stage[1:]:
                h = block(torch.cat([h, skips.pop()], dim=1))
        return self.conv_out(h)


class LiteVAEEncoder(nn.Module):
    """Eqs. (1)-(3): x [N, C, H, W] -> moments [N, 2 n_z, H/2^L, W/2^L] (mean, log-variance: diffusers'
    DiagonalGaussianDistribution layout, so it drops into AutoencoderKL.encode)."""

    def __init__(self, in_channels: int, n_z: int, levels: int, extractor: UNetSpec, aggregator: UNetSpec):
        super().__init__()
        self.levels, c = levels, 4 * in_channels
        self.extractors = nn.ModuleList(LightUNet(c, c, extractor) for _ in range(levels))  # F_l, l = 1..L
        self.aggregator = LightUNet(c * levels, 2 * n_z, aggregator)                       # F_agg

    def forward(self, x):
        feats = dwt_features(x, self.levels)
        # Eq. (2): level l is at H/2^l; average-pooling by 2^(L-l) brings it to the latent's H/2^L (open-litevae's
        # operator; the paper does not state it)
        h = [F.avg_pool2d(f(X), 2 ** (self.levels - 1 - i)) for i, (f, X) in enumerate(zip(self.extractors, feats))]
        return self.aggregator(torch.cat(h, dim=1))


def litevae(ae, encoder: LiteVAEEncoder):
    """LiteVAE from a diffusers AutoencoderKL: its encoder (and the quant_conv after it) replaced by the wavelet
    encoder; the decoder (post_quant_conv + Decoder) and `encode` / `decode` are diffusers' own."""
    ae.encoder, ae.quant_conv = encoder, None
    return ae


# --------------------------------------------------------------------------- self-modulated convolution (Eq. 4)
class SMC(nn.Module):
    """Eq. (4): a convolution whose filters are renormalised to unit L2 norm after a learned per-input-channel
    scale s (init 1). Invariant to the scale of w; with s = 1 it is a conv with per-filter L2-normalised weights."""

    def __init__(self, conv: nn.Conv2d, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().clone())                       # w [O, I, k, k]
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None
        self.scale = nn.Parameter(torch.ones(conv.in_channels))                          # s [I]
        self.stride, self.padding, self.eps = conv.stride, conv.padding, eps

    def modulated_weight(self) -> torch.Tensor:
        w = self.scale.view(1, -1, 1, 1) * self.weight
        return w / torch.sqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + self.eps)

    def forward(self, x):
        return F.conv2d(x, self.modulated_weight(), self.bias, self.stride, self.padding)


def smc_surgery(decoder: nn.Module) -> nn.Module:
    """Replace every GroupNorm + Conv pair of a diffusers `Decoder` in place: the norm by the identity, the conv
    after it by an SMC (ResnetBlock2D's norm1/conv1 and norm2/conv2, conv_norm_out/conv_out). The mid-block
    attention's GroupNorm (before linear q/k/v, no conv) is dropped as well, so the decoder has no norm layer."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.resnet import ResnetBlock2D

    for m in list(decoder.modules()):
        if isinstance(m, ResnetBlock2D):
            m.norm1, m.conv1 = nn.Identity(), SMC(m.conv1)
            m.norm2, m.conv2 = nn.Identity(), SMC(m.conv2)
        elif isinstance(m, Attention):
            m.group_norm = None
    decoder.conv_norm_out, decoder.conv_out = nn.Identity(), SMC(decoder.conv_out)
    return decoder


# --------------------------------------------------------------------------- the loss (Eq. 5)
@dataclass
class LossWeights:
    lpips: float
    kl: float
    wave: float
    gauss: float
    gauss_sigma: float
    gauss_kernel: int
    levels: int


def high_bands(x: torch.Tensor, levels: int) -> torch.Tensor:
    """All DWT high bands (cH, cV, cD) of levels 1..L, flattened and joined: the wavelet term's target."""
    return torch.cat([b.flatten(1) for bands in wavedec2(x, levels)[1:] for b in bands], dim=1)


def high_pass(x: torch.Tensor, sigma: float, kernel: int) -> torch.Tensor:
    """x - G * x with a Gaussian G (torchvision's gaussian_blur, reflect padding)."""
    from torchvision.transforms.functional import gaussian_blur

    return x - gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def litevae_loss(ae, lpips_dist, x: torch.Tensor, generator: torch.Generator, w: LossWeights) -> Dict[str, torch.Tensor]:
    """Eq. (5) for any AutoencoderKL-shaped model (VAE and LiteVAE get the same loss); images in [-1, 1].
    z ~ q(z|x) with eps drawn from `generator` (the same draws for every arm of a training seed)."""
    post = ae.encode(x).latent_dist
    eps = torch.randn(post.mean.shape, generator=generator).to(x.device)
    x_hat = ae.decode(post.mean + post.std * eps).sample
    parts = {"l1": (x_hat - x).abs().mean(),
             "lpips": lpips_dist(x_hat, x, augment=False).mean(),
             "kl": post.kl().mean() / x[0].numel(),
             "wave": (high_bands(x_hat, w.levels) - high_bands(x, w.levels)).abs().mean(),
             "gauss": (high_pass(x_hat, w.gauss_sigma, w.gauss_kernel)
                       - high_pass(x, w.gauss_sigma, w.gauss_kernel)).abs().mean()}
    parts["total"] = (parts["l1"] + w.lpips * parts["lpips"] + w.kl * parts["kl"] + w.wave * parts["wave"]
                      + w.gauss * parts["gauss"])
    return parts


# --------------------------------------------------------------------------- decoder feature statistics (claim c)
@torch.no_grad()
def channel_norms(decoder: nn.Module, z: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-channel L2 norms over (batch, height, width) of the decoder's mid block and each up block's output,
    for latents z (after post_quant_conv): {block name: [C]}."""
    blocks = {"mid": decoder.mid_block, **{f"up{i}": b for i, b in enumerate(decoder.up_blocks)}}
    out, hooks = {}, []
    for name, block in blocks.items():
        hooks.append(block.register_forward_hook(
            lambda m, i, o, name=name: out.__setitem__(name, o.double().pow(2).sum(dim=(0, 2, 3)).sqrt())))
    try:
        decoder(z)
    finally:
        for h in hooks:
            h.remove()
    return out


def norm_ratio(norms: torch.Tensor) -> float:
    """max / mean of one block's per-channel norms: 1 when every channel has the same magnitude."""
    return float(norms.max() / norms.mean())
