"""Diffusion2GAN -- Kang, Zhang, Barnes, Paris, Kwak, Park, Shechtman, Zhu, Park, "Distilling Diffusion Models
into Conditional GANs", ECCV 2024 (arXiv:2405.05967; official E-LatentLPIPS code mingukkang/elatentlpips).

Distillation as paired translation (Sec. 3): the teacher's deterministic ODE sampler maps noise z and a condition
c to a sample x = ODE(z, c); collect pairs (z, c, x) once, then train a one-step generator G on them:

    L_ODE = E_{z,c,x} d(G(z, c), x)                                            (Eq. 1, regression)
    L_G   = L_ODE + lambda_GAN L_GAN(G)                                      (Eq. 4, Diffusion2GAN)

Generator (Sec. 3): G is initialised as a copy of the teacher's network and evaluated once, at the last timestep:

    G(z, c) = F_theta(z, t = T, c)                                            [N, C, H, W]

Output parametrisation (our choice, see README "Differences"): the network's output IS the sample. The teacher
predicts eps; converting eps to x0 at t = T divides by sqrt(abar_T), which is ~0.0064 for the shared model's
1,000-step linear schedule (~0.068 for SD1.5's scaled-linear one), so any error of the copied network would be
amplified ~156x. The paper gives no formula here (only "initialised from the teacher"); the generator is a
noise-to-image translator whose output need not be an eps, so we read F's output directly as x. At
initialisation G(z, c) is therefore exactly the teacher's network call eps(z, T, c) (tests check it), i.e.
roughly z itself: training has to move every output.

Distances d (Sec. 4), one per arm:
    mse             mean (G - x)^2 in the teacher's sample space
    lpips           LPIPS(G, x) in pixels (here lpips[digits-cnn], common/perceptual.py)
    latent_lpips    LatentLPIPS(E(G), E(x)): LPIPS structure on a trunk trained on latents        (Eq. 2)
    e_latent_lpips  E-LatentLPIPS: E_T LatentLPIPS(T(E(G)), T(E(x))) + mean |E(G) - E(x)|         (Eq. 3)
                    one random differentiable augmentation T per sample and call, the SAME for both inputs
                    (official `AdaAugment`, preset 'bg' by default), and the latent L1 term of the official
                    `add_l1_loss=True` default, computed before the augmentation
    gan             e_latent_lpips + lambda_GAN L_GAN

The paper's teacher is a latent diffusion model, so G outputs latents and E is the identity. Our shared teacher
is pixel-space: E is the frozen encoder of the shared AutoencoderKL (common/autoencoder.py), applied to the
student's output with gradients and to the teacher's sample once (`LatentTarget`).

Discriminator (Sec. 5): initialised from the teacher's encoder (conv_in, time/class embeddings, down blocks, mid
block; common/gan.py UNetDiscriminator) evaluated at t = 0, with a projection-conditioned head at every level
(multi-scale). Losses: non-saturating by default (the GigaGAN recipe the paper builds on), hinge behind a switch.
The paper's text-alignment term (real image with a mismatched caption counted as fake) needs captions; with class
labels the projection head is the conditioning (README "Differences").

All arms train through one module (`Distiller`) and one optimizer: the generator term reaches D's weights only
through detached copies, the discriminator term sees detached fakes, so one backward pass updates both players
with their own losses (no gradient of L_G flows into D, none of L_D into G).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
from torch.func import functional_call

from common.gan import UNetDiscriminator, gan_losses, r1_penalty

ARMS = ("mse", "lpips", "latent_lpips", "e_latent_lpips", "gan")


# --------------------------------------------------------------------------- the one-step generator
def network_call(unet, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
    """One call of a diffusers UNet: class labels for a UNet2DModel, text embeddings [N, L, D] for a
    UNet2DConditionModel (SD1.5, the full profile)."""
    if getattr(unet.config, "cross_attention_dim", None):
        return unet(x, t, encoder_hidden_states=cond).sample
    return unet(x, t, class_labels=cond).sample


class Student(nn.Module):
    """G(z, c) = F_theta(z, T, c): a copy of the teacher network, evaluated once at the last timestep T - 1
    (0-based); its output is read as the sample (module docstring)."""

    def __init__(self, unet, num_train_timesteps: int):
        super().__init__()
        self.unet = unet.requires_grad_(True)  # a trained copy (the teacher's is frozen)
        self.register_buffer("t_T", torch.tensor(num_train_timesteps - 1), persistent=False)

    def forward(self, z: torch.Tensor, cond: Optional[torch.Tensor]) -> torch.Tensor:
        """z [N, C, H, W] (the pair's initial noise), cond [N] labels or [N, L, D] embeddings -> x [N, C, H, W]."""
        t = self.t_T.to(z.device).expand(z.shape[0])
        return network_call(self.unet, z, t, cond)


# --------------------------------------------------------------------------- the distances
class LatentTarget(nn.Module):
    """E: the sample space -> the latent space of the latent losses. A frozen AutoencoderKL's scaled mean (pixel
    teacher), or the identity (latent teacher, as in the paper: `ae=None`)."""

    def __init__(self, ae=None, scaling_factor: float = 1.0):
        super().__init__()
        self.ae, self.scaling_factor = ae, float(scaling_factor)
        if ae is not None:
            ae.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ae is None:
            return x
        return self.ae.encode(x).latent_dist.mean * self.scaling_factor  # [N, 4, h, w], differentiable in x

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: never leaves eval mode


class Regression(nn.Module):
    """d(G, x) per sample [N] of one arm (module docstring): forward(g, x, g_lat, x_lat, generator), with
    g_lat = E(G) and x_lat = E(x) (None for the pixel arms). The distance networks are frozen submodules."""

    def __init__(self, arm: str, pixel_lpips: Optional[nn.Module] = None, latent_lpips: Optional[nn.Module] = None):
        super().__init__()
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r} (one of {ARMS})")
        needs = {"lpips": pixel_lpips, "latent_lpips": latent_lpips, "e_latent_lpips": latent_lpips,
                 "gan": latent_lpips}
        if arm in needs and needs[arm] is None:
            raise ValueError(f"arm {arm!r} needs its distance network")
        self.arm, self.pixel_lpips, self.latent_lpips = arm, pixel_lpips, latent_lpips

    @property
    def latent(self) -> bool:
        """Whether this arm compares latents (then the student's output is encoded)."""
        return self.arm not in ("mse", "lpips")

    def forward(self, g, x, g_lat, x_lat, generator: torch.Generator) -> torch.Tensor:
        if self.arm == "mse":
            return (g - x).pow(2).flatten(1).mean(1)
        if self.arm == "lpips":
            return self.pixel_lpips(g, x)
        return self.latent_lpips(g_lat, x_lat, generator)  # plain or ensembled: the module's augment / l1


# --------------------------------------------------------------------------- the trained module
class Distiller(nn.Module):
    """G (and D for the GAN arm) with the arm's loss; `forward(z, cond, x, x_lat, generator)` is the training loss.

    distance: the arm's `Regression`; encode: `LatentTarget` (used by the latent arms);
    disc: a UNetDiscriminator (GAN arm) with weight lambda_GAN, loss kind and R1 gamma.
    """

    def __init__(self, student: Student, distance: Regression, encode: Optional[LatentTarget] = None,
                 disc: Optional[nn.Module] = None, gan_weight: float = 0.0, gan_loss: str = "nonsaturating",
                 r1_gamma: float = 0.0):
        super().__init__()
        self.student, self.distance, self.latent = student, distance, distance.latent
        self.encode = encode if distance.latent else None
        self.disc, self.gan_weight, self.r1_gamma = disc, gan_weight, r1_gamma
        self.d_loss, self.g_loss = gan_losses(gan_loss)

    def forward(self, z, cond, x, x_lat, generator: torch.Generator) -> torch.Tensor:
        g = self.student(z, cond)  # [N, C, H, W]
        g_lat = self.encode(g) if self.latent else None
        loss = self.distance(g, x, g_lat, x_lat, generator).mean()  # L_ODE (Eq. 1)
        if self.disc is not None:
            loss = loss + self.gan_weight * self.generator_gan_loss(g, cond) + self.discriminator_loss(g, x, cond)
        return loss

    def generator_gan_loss(self, g: torch.Tensor, cond) -> torch.Tensor:
        """L_GAN(G) through D with detached weights: gradients reach G only."""
        frozen = {k: v.detach() for k, v in self.disc.named_parameters()}
        return self.g_loss(functional_call(self.disc, frozen, (g, cond)))

    def discriminator_loss(self, g: torch.Tensor, x: torch.Tensor, cond) -> torch.Tensor:
        """L_D on the teacher's sample (real) and the detached student output (fake), + gamma/2 R1 on real."""
        loss = self.d_loss(self.disc(x, cond), self.disc(g.detach(), cond))
        if self.r1_gamma > 0:
            loss = loss + 0.5 * self.r1_gamma * r1_penalty(self.disc, x, cond)
        return loss


def discriminator(unet, num_classes: int, t_d: int = 0) -> nn.Module:
    """D initialised from the teacher's encoder (common/gan.py), or, for a text-conditioned UNet (SD1.5, the full
    profile), `TextUNetDiscriminator`."""
    if getattr(unet.config, "cross_attention_dim", None):
        return TextUNetDiscriminator(unet, t_d)
    return UNetDiscriminator(unet, num_classes, t_d)


class TextUNetDiscriminator(UNetDiscriminator):
    """UNetDiscriminator for a UNet2DConditionModel: the down / mid blocks get the text embeddings (cross-attention)
    and each head projects on the mean-pooled text embedding (a linear map to the level's width) instead of a class
    table. Kept here for the full profile; a candidate for common/gan.py."""

    def __init__(self, unet, t_d: int = 0):
        super().__init__(unet, 0, t_d)
        d = unet.config.cross_attention_dim
        self.text_proj = nn.ModuleList(nn.Linear(d, h.norm.num_channels, bias=False) for h in self.heads)

    def features(self, x: torch.Tensor, text: torch.Tensor):
        t = self.t_d.to(x.device).expand(x.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(x.dtype))
        h, feats = self.conv_in(x), []
        for block in self.down_blocks:
            kw = {"encoder_hidden_states": text} if getattr(block, "has_cross_attention", False) else {}
            h, _ = block(hidden_states=h, temb=emb, **kw)
            feats.append(h)
        feats.append(self.mid_block(h, emb, encoder_hidden_states=text))
        return feats

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        pooled = text.mean(dim=1)  # [N, D]
        out = []
        for head, proj, f in zip(self.heads, self.text_proj, self.features(x, text)):
            phi = nn.functional.silu(head.norm(f)).mean(dim=(2, 3))  # [N, C]
            out.append(head.linear(phi).squeeze(1) + (proj(pooled) * phi).sum(dim=1))
        return torch.stack(out)  # [heads, N]


# --------------------------------------------------------------------------- Appendix B: the overfitting experiment
def fit_latent(target: torch.Tensor, distance, steps: int, lr: float, generator: torch.Generator,
               monitor: Callable[[int, torch.Tensor], None], monitor_every: int) -> torch.Tensor:
    """Official overfitting_exp.py: a random latent (randn, the targets' shape) fitted to the targets by Adam on
    distance(target, latent) (an E-LatentLPIPS with one augmentation draw per call, or plain LatentLPIPS);
    `monitor(step, latent)` every `monitor_every` steps. Returns the fitted latent."""
    w = nn.Parameter(torch.randn(target.shape, generator=generator))
    opt = torch.optim.Adam([w], lr=lr)
    for step in range(steps):
        opt.zero_grad()
        loss = distance(target, w, generator).mean()
        loss.backward()
        opt.step()
        if (step + 1) % monitor_every == 0:
            with torch.no_grad():
                monitor(step + 1, w.detach())
    return w.detach()
