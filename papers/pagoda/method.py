"""PaGoDA (Kim et al., NeurIPS 2024): a one-step generator grown from a low-resolution diffusion teacher.

The paper's three steps, as the official code (sony/pagoda) runs them:

1. A low-resolution EDM teacher D(x; sigma) (VE, sigma in [sigma_min, sigma_max], EDM preconditioning) is trained
   on the data downsampled by `d` (common/edm.py).
2. Encoder = the teacher's PF-ODE solved from data to noise (Sec. 3.1; data_gather_reverse.py):
       dx/dsigma = (x - D(x; sigma)) / sigma,   x(sigma_min) = down_d(x_data)  ->  x(sigma_max) = sigma_max z
   with Heun's method on the Karras grid (EDM eq. 5, rho = 7, 40 points; `heun_pf_ode`), precomputed once.
3. Decoder G (init: the teacher), one call at sigma_max (Sec. 3.2; karras_diffusion.py get_T_to_0):
       x_hat = G(z) = c_skip(sigma_max) sigma_max z + c_out(sigma_max) F(c_in(sigma_max) sigma_max z, c_noise(sigma_max))
   trained with
       L = L_rec(x_hat(z_inv), x_real) + w lambda L_G,   L_G = -E D_phi(G(z_fresh))           (Eq. 6, hinge)
       L_D = E relu(1 - D_phi(x_real)) + E relu(1 + D_phi(G(z_fresh)))
       lambda = clip(||grad_last L_rec|| / (||grad_last L_G|| + 1e-4), 0.01, 10)     (common.gan.adaptive_weight)
   L_rec is the feature distance to the REAL image (not to a teacher sample): sum over taps of mean_hw sum_c
   (n(f(x_hat)) - n(f(x)))^2 with channel L2 normalisation n (get_recon_loss, loss_norm 'cnn_vit').
4. Progressive growing (Sec. 3.3): the decoder at 2^k x gets new output blocks (upsample + res blocks) after the
   previous decoder's last feature map; every same-name same-shape weight is copied (`grow`), only the new blocks
   and the output head are trained (official `activate_from`), targets are real images at the new resolution,
   the input stays the low-resolution inverted noise.

Shapes: z [N, C, r, r] (r = the teacher's resolution), labels [N], x_hat [N, C, r 2^k, r 2^k].
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.edm import EDM
from common.gan import adaptive_weight, d_hinge, g_hinge

# D(x [N,C,H,W], sigma [N,1,1,1]) -> denoised x
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- 2. the PF-ODE encoder (and the teacher's sampler)
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..n-1, descending
    (EDM eq. 5; the official get_t with start_scales = n). float64: the grid itself carries no rounding."""
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    return (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


@torch.no_grad()
def heun_pf_ode(denoiser: Denoiser, x: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """x(sigmas[-1]) from x(sigmas[0]) by Heun's method on dx/dsigma = (x - D(x; sigma)) / sigma, the 2nd-order
    correction on every interval (official heun_solver; no interval ends at 0). Descending sigmas sample,
    ascending sigmas invert (data -> noise)."""
    sig = [float(s) for s in sigmas]
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (x - denoiser(x, _sigma(s, x))) / s
        x_euler = x + (s_next - s) * d
        d_next = (x_euler - denoiser(x_euler, _sigma(s_next, x))) / s_next
        x = x + (s_next - s) * (d + d_next) / 2
    return x


def _sigma(s: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0], 1, 1, 1), s, dtype=x.dtype, device=x.device)


def invert(denoiser: Denoiser, x0: torch.Tensor, edm: EDM, num_points: int) -> torch.Tensor:
    """z = x(sigma_max) / sigma_max from x(sigma_min) = x0: the encoder of step 2 (noise ~ N(0, I) scale)."""
    sigmas = karras_sigmas(num_points, edm.sigma_min, edm.sigma_max, edm.rho).flip(0)
    return heun_pf_ode(denoiser, x0, sigmas) / edm.sigma_max


def sample(denoiser: Denoiser, z: torch.Tensor, edm: EDM, num_points: int) -> torch.Tensor:
    """The teacher's multi-step sample from z ~ N(0, I): x(sigma_min) from x(sigma_max) = sigma_max z
    (2 (num_points - 1) network calls)."""
    return heun_pf_ode(denoiser, z * edm.sigma_max, karras_sigmas(num_points, edm.sigma_min, edm.sigma_max, edm.rho))


# --------------------------------------------------------------------------- 3. the one-step decoder
def unet_features(unet, x: torch.Tensor, c_noise: torch.Tensor, labels: Optional[torch.Tensor]):
    """A diffusers UNet2DModel up to its last up block (before conv_norm_out / conv_out): (h [N, C0, H, W], emb).
    The same computation as UNet2DModel.forward steps 1-5 (checked: decoder at init == teacher)."""
    emb = unet.time_embedding(unet.time_proj(c_noise).to(x.dtype))
    if unet.class_embedding is not None:
        emb = emb + unet.class_embedding(labels).to(x.dtype)
    h = unet.conv_in(x)
    skips = (h,)
    for block in unet.down_blocks:
        h, res = block(hidden_states=h, temb=emb)
        skips += res
    h = unet.mid_block(h, emb)
    for block in unet.up_blocks:
        res, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
        h = block(h, res, emb)
    return h, emb


class GrowthBlock(nn.Module):
    """One new 2x level (official: the output blocks added per resolution): nearest 2x upsample + 3x3 conv, then
    `layers` time-conditioned res blocks at `channels` (the previous level's width: the head fits unchanged)."""

    def __init__(self, channels: int, temb_channels: int, layers: int, groups: int):
        from diffusers.models.resnet import ResnetBlock2D
        from diffusers.models.upsampling import Upsample2D

        super().__init__()
        self.upsample = Upsample2D(channels, use_conv=True)
        self.resnets = nn.ModuleList(ResnetBlock2D(in_channels=channels, out_channels=channels,
                                                   temb_channels=temb_channels, groups=groups) for _ in range(layers))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.upsample(h)
        for r in self.resnets:
            h = r(h, emb)
        return h


HEAD = ("unet.conv_norm_out", "unet.conv_out")  # the output head: retrained at every growth stage (official `out`)


class Decoder(nn.Module):
    """G: z [N, C, r, r] -> x_hat [N, C, r 2^k, r 2^k] in one call at sigma_max (module docstring, step 3-4).
    Parameter names: `unet.*` (the teacher's, then the base decoder's) and `growth.<k>.*` (the k-th 2x level)."""

    def __init__(self, unet, edm: EDM, levels: int = 0, growth_layers: int = 2):
        super().__init__()
        self.unet, self.edm = unet, edm
        c0, temb = unet.config.block_out_channels[0], unet.time_embedding.linear_2.out_features
        self.growth = nn.ModuleList(GrowthBlock(c0, temb, growth_layers, unet.config.norm_num_groups)
                                    for _ in range(levels))
        self.pre = edm.preconditioner()

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        sigma = torch.full((z.shape[0], 1, 1, 1), self.edm.sigma_max, dtype=z.dtype, device=z.device)
        x_t = z * self.edm.sigma_max
        c_noise = self.pre.precondition_noise(sigma.flatten())
        h, emb = unet_features(self.unet, self.pre.precondition_inputs(x_t, sigma), c_noise, labels)
        for block in self.growth:
            h = block(h, emb)
        f = self.unet.conv_out(self.unet.conv_act(self.unet.conv_norm_out(h)))
        skip = F.interpolate(x_t, size=f.shape[-2:], mode="nearest") if self.growth else x_t
        return self.pre.precondition_outputs(skip, f, sigma)  # c_skip skip + c_out F (c_skip(80) ~ 4e-5)

    def last_layer(self) -> torch.Tensor:
        """The weight the adaptive GAN weight differentiates (official get_last_layer: the last conv)."""
        return self.unet.conv_out.weight


def grow(new: Decoder, old: Decoder) -> Dict[str, List[str]]:
    """Copy every weight of `old` into the same-name same-shape slot of `new`, freeze it, leave the new levels and the
    head trainable. Unlike the official loader (which silently skips a name it does not find), a weight of `old`
    without its slot in `new` raises: a renamed layer would otherwise stay random."""
    src, dst = old.state_dict(), new.state_dict()
    missing = [k for k in src if k not in dst or dst[k].shape != src[k].shape]
    if missing:
        raise KeyError(f"grow: {len(missing)} weight(s) of the previous decoder have no same-name same-shape slot in "
                       f"the grown one (renamed or resized layers): {missing[:8]}")
    new.load_state_dict(src, strict=False)
    for name, p in new.named_parameters():
        p.requires_grad_(name not in src or name.startswith(HEAD))
    return {"copied": sorted(src), "new": sorted(k for k in dst if k not in src),
            "trainable": sorted(n for n, p in new.named_parameters() if p.requires_grad)}


# --------------------------------------------------------------------------- the losses of step 3
def feature_reconstruction(distance: nn.Module, x_hat: torch.Tensor, x: torch.Tensor, size: int) -> torch.Tensor:
    """L_rec per sample [N]: the LPIPS structure with unit heads (= the official cnn_vit sum) on a frozen trunk,
    inputs smaller than the trunk's training size `size` bilinearly upsampled to it (official: < 256 px -> 224)."""
    if x.shape[-1] < size:
        x_hat, x = (F.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in (x_hat, x))
    return distance(x_hat, x)


class PaGoDA(nn.Module):
    """The decoder and its discriminator in one module (one optimizer; the D update only sees L_D, see `loss`)."""

    def __init__(self, decoder: Decoder, disc: Optional[nn.Module]):
        super().__init__()
        self.decoder, self.disc = decoder, disc


def to_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize to `size` (0 or the same size: unchanged)."""
    return x if size in (0, x.shape[-1]) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def decoder_loss(model: PaGoDA, distance: nn.Module, trunk_size: int, z: torch.Tensor, x: torch.Tensor,
                 labels: torch.Tensor, z_fresh: torch.Tensor, gan_weight: float, clip=(0.01, 10.0),
                 disc_size: int = 0) -> dict:
    """One step's losses (module docstring, step 3). z: inverted noise of the real batch x; z_fresh: new N(0, I)
    noise for the fakes. The generator's GAN term sees the discriminator with detached weights, the discriminator's
    hinge loss sees detached fakes, so summing them trains each player on its own objective only. `disc_size`: the
    discriminator's input size (0: the images' own; the official projected discriminators see 224 px)."""
    g = model.decoder
    rec = feature_reconstruction(distance, g(z, labels), x, trunk_size).mean()
    if model.disc is None or gan_weight == 0:
        return {"total": rec, "rec": rec.detach()}
    fake, x = to_size(g(z_fresh, labels), disc_size), to_size(x, disc_size)
    frozen = {k: v.detach() for k, v in model.disc.named_parameters()}
    l_g = g_hinge(torch.func.functional_call(model.disc, frozen, (fake, labels)))
    lam = adaptive_weight(rec, l_g, g.last_layer(), clip=clip)
    l_d = d_hinge(model.disc(x, labels), model.disc(fake.detach(), labels))
    return {"total": rec + gan_weight * lam * l_g + l_d, "rec": rec.detach(), "g": l_g.detach(),
            "d": l_d.detach(), "lambda": lam}
