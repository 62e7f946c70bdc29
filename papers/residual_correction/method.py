"""Residual Learning in Diffusion Models -- Zhang, Liu, Park, Zhang, Xu, CVPR 2024, pp. 7289-7299.

The paper's premise (abstract): score-estimation and discretisation errors accumulate along the
sampling trajectory, so the sampler's output x_hat_0 misses the data by a *residual*. A correction
function r_phi, trained once for a frozen diffusion model, rectifies the end of the trajectory:

    gap (the residual):     delta = x_0 - x_hat_0                                           (R1)
    correction:             x_tilde_0 = x_hat_0 + r_phi(x_hat_0, N)                          (R2)
    objective:              min_phi  E || x_hat_0 + r_phi(x_hat_0, N) - x_0 ||^2
                          = min_phi  E || r_phi(x_hat_0, N) - delta ||^2                     (R3)

The paper's text (equation numbers, how pairs (x_0, x_hat_0) are made, r_phi's inputs) could not
be read here; R1-R3 and the pairing below are OUR reconstruction (README: "paper vs our choice").

Residual simulation (our pairing). The sampler is deterministic (DDIM, eta = 0), so a real image
x_0 needs its own starting noise: we take x_T = the DDIM *inversion* of x_0 with many steps, an
accurate solve of the model's probability-flow ODE backwards (the DDIM update, Song et al. 2021
eq. (12) with eta = 0, run upwards in t from 0 to T - 1, their Sec. 4.3), and run the N-step
sampler forward from it. x_hat_0 = sampler_N(inversion(x_0)) is what the sampler makes of the
noise that belongs to x_0, and the gap R1 is its discretisation + model error. (Forward-noising x_0 to the first timestep would not do: at t = T - 1 the linear schedule
keeps sqrt(ab) = 0.006 of the image, so the sampler's output is unrelated to that x_0.)

r_phi is a small UNet (`correction` in params.yaml), class-agnostic like the paper's unconditional
models, told the sampler's NFE through its time embedding: one network for every NFE of the grid.
Its output layer starts at zero, so before training x_tilde_0 = x_hat_0 exactly.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from common.diffusion import ModelFn, NoiseSchedule
from common.sampling import Hooks, sample, timesteps

Correction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # r_phi(x_hat [N,C,H,W], nfe [N]) -> [N,C,H,W]


# --------------------------------------------------------------------------- residual simulation
@torch.no_grad()
def ddim_inversion(model_fn: ModelFn, schedule: NoiseSchedule, x0: torch.Tensor, cond, num_steps: int,
                   spacing: str = "linspace") -> torch.Tensor:
    """x_T of x_0 under the model's deterministic DDIM ODE, run backwards over `num_steps` steps.

    Ascending grid -1 (data) -> t_0 = 0 -> ... -> t_{M-1} = T - 1 (the reverse of the sampler's grid);
    each step is the DDIM update (eq. (12), eta = 0) towards larger t, with eps = eps_theta(x_{t_a}, t_a)
    (t_a = -1 is evaluated at t = 0):
        x_{t_b} = sqrt(ab_b) (x_{t_a} - sqrt(1 - ab_a) eps) / sqrt(ab_a) + sqrt(1 - ab_b) eps.
    No x0 clipping: clipping would make the map non-invertible.
    """
    grid = [-1] + timesteps(num_steps, schedule.T, spacing)[::-1]  # ascending
    x = x0
    for t_a, t_b in zip(grid[:-1], grid[1:]):
        tt = torch.full((x.shape[0],), max(t_a, 0), dtype=torch.long)
        eps = model_fn(x, tt, cond)
        x0_hat = schedule.predict_x0(x, eps, t_a)
        ab_b = schedule.alpha_bar(t_b)
        x = (ab_b.sqrt() * x0_hat + (1 - ab_b).sqrt() * eps).to(x0.dtype)
    return x


@torch.no_grad()
def sampler_output(model_fn: ModelFn, schedule: NoiseSchedule, x_T: torch.Tensor, cond, nfe: int,
                   spacing: str = "linspace", clip_x0: bool = True, hooks: Optional[Hooks] = None) -> torch.Tensor:
    """x_hat_0: the N-step DDIM sampler (eta = 0) of common/sampling.py, started from a given x_T."""
    return sample(model_fn, schedule, lambda: x_T.clone(), cond, timesteps(nfe, schedule.T, spacing), "ddim", 0.0,
                  clip_x0, hooks)


def residual(x0: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """The gap R1: delta = x_0 - x_hat_0, the regression target of r_phi."""
    return x0 - x_hat


def simulate_residuals(model_fn: ModelFn, schedule: NoiseSchedule, x0: torch.Tensor, cond, nfe_grid: Sequence[int],
                       inversion_steps: int, spacing: str = "linspace", clip_x0: bool = True):
    """Training pairs for every NFE of the grid from one inversion of x_0.

    Returns (x_hat [K*B, C, H, W], nfe [K*B], x0 [K*B, C, H, W]) with K = len(nfe_grid), NFE-major.
    """
    x_T = ddim_inversion(model_fn, schedule, x0, cond, inversion_steps, spacing)
    x_hat = [sampler_output(model_fn, schedule, x_T, cond, n, spacing, clip_x0) for n in nfe_grid]
    nfe = torch.cat([torch.full((x0.shape[0],), n, dtype=torch.long) for n in nfe_grid])
    return torch.cat(x_hat), nfe, x0.repeat(len(nfe_grid), *([1] * (x0.dim() - 1)))


# --------------------------------------------------------------------------- the correction function
def unet_correction(net) -> Correction:
    """r_phi(x_hat, N) from a diffusers UNet2DModel whose time input carries the NFE."""

    def r(x_hat, nfe):
        return net(x_hat, nfe).sample

    return r


def zero_output_layer(net):
    """Start r_phi at 0, i.e. x_tilde_0 = x_hat_0 (R2) before any training."""
    torch.nn.init.zeros_(net.conv_out.weight)
    torch.nn.init.zeros_(net.conv_out.bias)
    return net


def correct(r: Correction, x_hat: torch.Tensor, nfe: torch.Tensor) -> torch.Tensor:
    """R2: x_tilde_0 = x_hat_0 + r_phi(x_hat_0, N)."""
    return x_hat + r(x_hat, nfe)


def residual_loss(r: Correction, x_hat: torch.Tensor, nfe: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """R3: mean over pixels and pairs of || x_hat_0 + r_phi(x_hat_0, N) - x_0 ||^2."""
    return torch.mean((correct(r, x_hat, nfe) - x0) ** 2)


class ResidualCorrection(Hooks):
    """Sampler hook: on the last step (t -> data) the x0 estimate, which DDIM returns as the sample,
    becomes x0 + r_phi(x0, N). Earlier steps are untouched."""

    def __init__(self, r: Correction, nfe: int):
        self.r, self.nfe = r, nfe

    def x0(self, x0, x, i, t):
        if i != self.nfe - 1:
            return x0
        return correct(self.r, x0, torch.full((x0.shape[0],), self.nfe, dtype=torch.long))
