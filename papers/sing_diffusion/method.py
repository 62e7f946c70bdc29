"""SingDiffusion -- Zhang, Yin, Li, Xie, "Tackling the Singularities at the Endpoints of Time
Intervals in Diffusion Models", CVPR 2024 (arXiv:2403.08381; official code PangzeCheung/SingDiffusion).

The singularity at t = 1. Practical models are trained on t in [eps, 1 - eps]: their last training
step still has ab_T > 0 (Stable Diffusion 1.5: ab_999 = 0.00466), and samplers often start even
lower (diffusers' "leading" DDIM grid starts SD at t = 981). The sampler nevertheless starts from
x ~ N(0, I), which is the marginal at t = 1 (ab = 0), not at its first step t0. The paper shows that
the reverse transition from t = 1 is still Gaussian and that its mean is well defined: since x_1 is
independent of x_0,

    E[x_0 | x_1, c] = E[x_0 | c]                                               (the removable singularity)

so one time-free network ybar_phi(c) trained with the x0-prediction loss at t = 1,

    L(phi) = E_{x_0, c} || x_0 - ybar_phi(c) ||^2                              (loss at t = 1)

recovers it. Sampling then takes one DDIM step from t = 1 (eps = x_1, x0 = ybar) to the base
sampler's first step t0, and hands x_{t0} to the unchanged base sampler (the shared sampler's start hook):

    x_{t0} = sqrt(ab_{t0}) * ybar + sqrt(1 - ab_{t0}) * x_1                      (initial singular step)

(official `SingDiffusionPipeline.__call__`: `scheduler.add_noise(ybar, x_1, timesteps[0])`, the
result passed as `latents=` to StableDiffusionPipeline). With classifier-free guidance at scale
s > 1 the official code uses a *normalized* guided mean,

    ybar = (ybar_u + s (ybar_c - ybar_u)) / s                                  (official, s > 1)

where ybar_u is the null-condition prediction. The official module is an SD-1.5 UNet with its time
embeddings removed that also receives x_1; by the identity above x_1 carries no information about
x_0, so here the network sees the condition only (class label, the null class included so that
guidance works). Everything else -- the base network, its noise schedule, the sampler -- is
unchanged; this file is the whole method.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.devices import module_device, to_device
from common.sampling import Hooks


class SingDiffusionNet(nn.Module):
    """ybar_phi(c): a time-free network from the condition to an image-shaped x0 prediction.

    `num_classes` real classes plus the null class (index `num_classes`); with num_classes = 0 it
    has the null class only (unconditional models). Input: LongTensor [N] of labels; output
    [N, C, H, W].
    """

    def __init__(self, num_classes: int, shape, embed_dim: int = 64, hidden: int = 256):
        super().__init__()
        self.num_classes, self.shape = num_classes, tuple(shape)
        self.embed = nn.Embedding(num_classes + 1, embed_dim)
        self.hidden = nn.Linear(embed_dim, hidden)
        self.out = nn.Linear(hidden, math.prod(self.shape))

    def forward(self, c: Optional[torch.Tensor], n: Optional[int] = None) -> torch.Tensor:
        if c is None:  # unconditional: the null class for all n samples
            c = torch.full((n,), self.num_classes, dtype=torch.long)
        h = F.silu(self.hidden(self.embed(c)))
        return self.out(h).reshape(-1, *self.shape)


def drop_condition(c: torch.Tensor, p: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free guidance training: replace the label by the null class with probability p."""
    if p <= 0:
        return c
    drop = (torch.rand(c.shape[0], generator=generator) < p).to(c.device)  # drawn on the CPU: same on any device
    return torch.where(drop, torch.full_like(c, null_class), c)


def singularity_loss(net: SingDiffusionNet, x0: torch.Tensor, c: torch.Tensor, generator: torch.Generator,
                     cond_dropout: float = 0.0) -> torch.Tensor:
    """L(phi) = E || x_0 - ybar_phi(c) ||^2 at t = 1 (x_1 is independent of x_0, so it drops out)."""
    c = drop_condition(c, cond_dropout, net.num_classes, generator)
    return torch.mean((x0 - net(c)) ** 2)


def guided_mean(ybar_c: torch.Tensor, ybar_u: torch.Tensor, scale: float, normalize: bool = True) -> torch.Tensor:
    """ybar under classifier-free guidance: (ybar_u + s (ybar_c - ybar_u)) / s for s > 1 (official);
    without `normalize`, the plain guided ybar_u + s (ybar_c - ybar_u). s <= 1: ybar_c (official)."""
    if scale <= 1:
        return ybar_c
    guided = ybar_u + scale * (ybar_c - ybar_u)
    return guided / scale if normalize else guided


@torch.no_grad()
def predict_mean(net: SingDiffusionNet, c: Optional[torch.Tensor], n: int, guidance_scale: float = 1.0,
                 normalize: bool = True) -> torch.Tensor:
    """ybar for labels c ([N], or None for unconditional), guided as the official pipeline does."""
    ybar_c = net(c, n)
    if c is None or guidance_scale <= 1:
        return ybar_c
    return guided_mean(ybar_c, net(torch.full_like(c, net.num_classes)), guidance_scale, normalize)


def initial_singular_step(x1: torch.Tensor, ybar: torch.Tensor, ab_t0) -> torch.Tensor:
    """x_{t0} = sqrt(ab_{t0}) ybar + sqrt(1 - ab_{t0}) x_1: the DDIM step from t = 1 with eps = x_1."""
    ab = torch.as_tensor(ab_t0, dtype=torch.float64)
    return (ab.sqrt() * ybar.double() + (1 - ab).sqrt() * x1.double()).to(x1.dtype)


class SingDiffusionStart(Hooks):
    """The plug-in, as the shared sampler's start hook: x_1 (its initial noise) -> x_{t0} for labels c,
    t0 = the base sampler's first step. The base sampler (common/sampling.py) then runs unchanged, its own
    noise draws included (DDIM with eta > 0, DDPM)."""

    def __init__(self, net: SingDiffusionNet, schedule, guidance_scale: float = 1.0, normalize: bool = True):
        self.net, self.schedule = net.eval(), schedule
        self.guidance_scale, self.normalize = guidance_scale, normalize

    def start(self, x1, c, t0, gens):
        ybar = predict_mean(self.net, to_device(c, module_device(self.net)), x1.shape[0], self.guidance_scale,
                            self.normalize)
        return initial_singular_step(x1, ybar.to(x1.device), self.schedule.alpha_bar(t0))


def start_gap_nats(x0: torch.Tensor, ab_t0) -> torch.Tensor:
    """How far N(0, I) is from the true marginal q(x_{t0}): an upper bound on KL(q(x_{t0}) || N(0, I)).

    By convexity, KL(q_t || N) <= E_{x0} KL(N(sqrt(ab) x0, (1 - ab) I) || N(0, I))
    = E_{x0} 1/2 [ab ||x0||^2 - D ab - D log(1 - ab)], in nats per image; x0: [N, C, H, W] data.
    It is zero when ab_{t0} = 0 (a sampler that starts at a true t = 1).
    """
    ab = torch.as_tensor(ab_t0, dtype=torch.float64)
    sq = x0.double().flatten(1).pow(2).sum(1)  # ||x0||^2 per image
    d = x0[0].numel()
    return (0.5 * (ab * sq - d * ab - d * torch.log1p(-ab))).mean()
