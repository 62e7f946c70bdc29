"""PaGoDA's pieces on the shared teacher (root base_model: a class-conditional eps-prediction DDPM UNet, VP, discrete
t = 0..T-1) instead of papers/pagoda's own EDM teacher (VE, continuous sigma). The losses and the ODE solver are
papers/pagoda/method.py's, imported; this module only translates between the two parametrisations.

VP -> VE: x_ve = x_vp / alpha_t, sigma = sigma_t / alpha_t (alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t)), so the
teacher's x0 prediction IS the EDM denoiser D(x_ve; sigma) of PaGoDA's encoder (method.py step 2):
    D(x_ve; sigma(t)) = x0_psi(alpha_t x_ve, t, c)
It exists on the teacher's T discrete sigmas only: the Karras grid of the inversion is snapped to them
(`inversion_grid`). z = x_ve(sigma_max) / sigma_max = x_vp(T-1) / sigma_{T-1}: the noise scale of the teacher pairs.

The decoder G (method.py step 3) is a copy of the teacher called once at t = T - 1 with its output read as the sample
(papers/diffusion2gan/method.py's Student, the same one-step student as Diffusion2GAN's): EDM's c_skip / c_out at
sigma_max has no counterpart for an eps network without the 1 / alpha_T = 156x amplification of x0 = (x - sigma eps) /
alpha, so both one-step students share the network, the initialisation and the output head, and differ in their
training signal only. Shapes: x [N, C, H, W], labels [N], sigma [N, 1, 1, 1].
"""

from __future__ import annotations

from typing import List

import torch

from common.teacher_pairs import Teacher
from papers.diffusion2gan.method import Student
from papers.pagoda import method as pagoda


def vp_sigmas(teacher: Teacher) -> torch.Tensor:
    """sigma(t) = sqrt((1 - ab_t) / ab_t) for t = 0..T-1 (ascending), float64."""
    ab = teacher.schedule.alpha_bar(torch.arange(teacher.schedule.T)).double()
    return ((1 - ab) / ab).sqrt()


def inversion_grid(teacher: Teacher, num_points: int, rho: float) -> List[int]:
    """The teacher's timesteps nearest (in log sigma) to PaGoDA's Karras grid of `num_points` between sigma(0) and
    sigma(T-1), ascending (data -> noise), duplicates dropped."""
    table = vp_sigmas(teacher)
    karras = pagoda.karras_sigmas(num_points, float(table[0]), float(table[-1]), rho).flip(0)
    ts = [int((table.log() - s.log()).abs().argmin()) for s in karras]
    return sorted(set(ts))


class VPDenoiser:
    """D(x_ve; sigma) of the shared teacher for one batch of labels (module docstring), on its discrete sigmas."""

    def __init__(self, teacher: Teacher, labels: torch.Tensor):
        self.teacher, self.labels, self.table = teacher, labels, vp_sigmas(teacher)

    def timestep(self, sigma: float) -> int:
        t = int((self.table.log() - torch.log(torch.tensor(sigma, dtype=torch.float64))).abs().argmin())
        if abs(float(self.table[t]) / sigma - 1) > 1e-4:
            raise ValueError(f"sigma {sigma} is not one of the teacher's discrete sigmas (nearest: t = {t})")
        return t

    def __call__(self, x_ve: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.timestep(float(sigma.flatten()[0]))
        alpha = float(self.teacher.schedule.alpha_bar(torch.tensor(t)).sqrt())
        return self.teacher.x0(x_ve * alpha, t, self.labels)


@torch.no_grad()
def invert(teacher: Teacher, x0: torch.Tensor, labels: torch.Tensor, ts: List[int]) -> torch.Tensor:
    """PaGoDA's encoder (method.py step 2) with the shared teacher: Heun on the PF-ODE from x0 at sigma(ts[0]) to
    sigma(ts[-1]), returned as z = x_ve / sigma_max (~ N(0, I)). 2 (len(ts) - 1) teacher calls per image."""
    sig = vp_sigmas(teacher)[ts]
    x = pagoda.heun_pf_ode(VPDenoiser(teacher, labels), x0, [float(s) for s in sig])
    return x / float(sig[-1])


class Decoder(Student):
    """G(z, c): Diffusion2GAN's one-call student (a copy of the teacher at t = T - 1, output read as the sample) with
    the layer PaGoDA's adaptive GAN weight differentiates (method.Decoder.last_layer: the last conv)."""

    def last_layer(self) -> torch.Tensor:
        return self.unet.conv_out.weight
