"""GAN pieces of the one-step distillation papers: a teacher-initialised discriminator, losses, R1, PaGoDA's weight.

- `UNetDiscriminator`: Diffusion2GAN's discriminator is initialised from the diffusion UNet; here the teacher's
  encoder (conv_in, time and class embeddings, every down block and the mid block) is deep-copied with its
  weights, evaluated at a fixed timestep `t_d` (0: the clean end, where the student's outputs live), and a
  head on each level's output (several resolutions) gives a projection-conditioned logit (Miyato & Koyama 2018):
      D_k(x, c) = w_k . phi_k(x) + <E_k[c], phi_k(x)>,  phi_k = mean_hw SiLU(GroupNorm(h_k)).
  The losses average over the heads.
- Losses: hinge (PaGoDA's; L_D = E relu(1 - D(x)) + E relu(1 + D(G)), L_G = -E D(G)) and non-saturating
  (L_D = E softplus(-D(x)) + E softplus(D(G)), L_G = E softplus(-D(G))).
- `r1_penalty`: E ||grad_x D(x)||^2 on real data (Mescheder et al. 2018); the caller multiplies by gamma / 2.
- `adaptive_weight`: PaGoDA's lambda (sony/pagoda cm/karras_diffusion.py calculate_adaptive_weight and
  get_adaptive_weight): ||grad_last L_rec|| / (||grad_last L_G|| + 1e-4), clamped to [0, 1e4], detached, then
  clipped to [0.01, 10]; 1 when L_rec is 0. The official code turns a NaN weight into a silently zero loss;
  here a non-finite weight raises.
"""

from __future__ import annotations

import copy
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODER_PARTS = ("conv_in", "time_proj", "time_embedding", "class_embedding", "down_blocks", "mid_block")


class ProjectionHead(nn.Module):
    """One resolution's logit: w . phi + <E[c], phi>, phi = mean_hw SiLU(GroupNorm(h)) [N, C]."""

    def __init__(self, channels: int, num_classes: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.linear = nn.Linear(channels, 1)
        self.embed = nn.Embedding(num_classes, channels) if num_classes > 0 else None

    def forward(self, h: torch.Tensor, label: Optional[torch.Tensor]) -> torch.Tensor:
        phi = F.silu(self.norm(h)).mean(dim=(2, 3))
        out = self.linear(phi).squeeze(1)
        if self.embed is not None and label is not None:
            out = out + (self.embed(label) * phi).sum(dim=1)
        return out


class UNetDiscriminator(nn.Module):
    """The teacher UNet's encoder (copied weights) with a projection head per level and one on the mid block."""

    def __init__(self, unet, num_classes: int, t_d: int = 0):
        super().__init__()
        for part in ENCODER_PARTS:
            setattr(self, part, copy.deepcopy(getattr(unet, part, None)))
        self.register_buffer("t_d", torch.tensor(int(t_d)), persistent=False)
        groups = unet.config.norm_num_groups
        widths = list(unet.config.block_out_channels) + [unet.config.block_out_channels[-1]]
        self.heads = nn.ModuleList(ProjectionHead(w, num_classes, groups) for w in widths)
        self.requires_grad_(True)

    def features(self, x: torch.Tensor, label: Optional[torch.Tensor]) -> List[torch.Tensor]:
        """The encoder's output at each level (after its downsampling) and the mid block's, as the UNet computes them."""
        t = self.t_d.to(x.device).expand(x.shape[0])
        emb = self.time_embedding(self.time_proj(t).to(x.dtype))
        if self.class_embedding is not None and label is not None:
            emb = emb + self.class_embedding(label).to(x.dtype)
        h, feats = self.conv_in(x), []
        for block in self.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
            feats.append(h)
        feats.append(self.mid_block(h, emb))
        return feats

    def forward(self, x: torch.Tensor, label: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits [heads, N]."""
        return torch.stack([head(f, label) for head, f in zip(self.heads, self.features(x, label))])


def copied_from(disc: UNetDiscriminator, unet) -> List[str]:
    """Names of the teacher's encoder parameters that `disc` holds with equal values (the initialisation check)."""
    ref = unet.state_dict()
    return [f"{part}.{k}" for part in ENCODER_PARTS if getattr(disc, part) is not None
            for k, v in getattr(disc, part).state_dict().items() if torch.equal(v, ref[f"{part}.{k}"])]


# --------------------------------------------------------------------------- losses (logits: any shape, e.g. [heads, N])
def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def d_nonsaturating(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()


LOSSES = {"hinge": (d_hinge, g_hinge), "nonsaturating": (d_nonsaturating, g_nonsaturating)}


def gan_losses(kind: str):
    """(discriminator loss(real, fake), generator loss(fake)) of `kind` ('hinge' | 'nonsaturating')."""
    if kind not in LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r} (one of {sorted(LOSSES)})")
    return LOSSES[kind]


def r1_penalty(disc: Callable[..., torch.Tensor], x_real: torch.Tensor, *args) -> torch.Tensor:
    """E_x ||grad_x sum_heads D(x)||^2 on real data, differentiable in D's parameters (create_graph).

    R1 differentiates a gradient: attention inside D must run as plain ops, since the fused SDPA kernels have no
    double backward (on CPU or GPU), hence the math backend here."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    x = x_real.detach().requires_grad_(True)
    with sdpa_kernel([SDPBackend.MATH]):
        (grad,) = torch.autograd.grad(disc(x, *args).sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    clip: Sequence[float] = (0.01, 10.0), eps: float = 1e-4) -> torch.Tensor:
    """PaGoDA's lambda = clip(||grad_last L_rec|| / (||grad_last L_G|| + eps), 0.01, 10), detached (module docstring)."""
    if not bool(rec_loss.detach().sum()):
        return torch.ones((), device=rec_loss.device)
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0].norm()
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0].norm()
    w = (g_rec / (g_gan + eps)).clamp(0.0, 1e4).detach().clamp(*clip)
    if not torch.isfinite(w):
        raise FloatingPointError(f"adaptive GAN weight is {w.item()} (grad norms: rec {g_rec.item()}, "
                                 f"gan {g_gan.item()})")
    return w
