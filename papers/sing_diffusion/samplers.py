"""Base samplers for the SingDiffusion comparison: DDIM (shared) and DPM-Solver++(2M), with a start hook.

DPM-Solver++(2M): Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models" (arXiv:2211.01095), Algorithm 2 (multistep, data prediction, order 2).
In the notation of the VP forward process x_t = alpha_t x0 + sigma_t eps with
alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t) and half log-SNR lambda_t = log(alpha_t / sigma_t),
one step from s to t with h = lambda_t - lambda_s and data predictions D_s = x0_theta(x_s, s):

    first order (= DDIM):  x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_s
    second order (2M):     x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) (D_s + (D_s - D_prev) / (2 r)),
                           r = h_prev / h,  h_prev = lambda_s - lambda_prev

The first step has no history and the last step lands on sigma = 0 (x = D), both first order --
the settings of diffusers' `DPMSolverMultistepScheduler` (solver_order=2, algorithm_type
"dpmsolver++", solver_type "midpoint", lower_order_final, final_sigmas_type "zero"), which
tests/papers/test_sing_diffusion.py checks this loop against. One network call per step, so at
equal NFE it costs what DDIM costs.

This is not the paper's idea; it is a base sampler the paper's first step plugs into. The shared
sampler (common/sampling.py) has DDIM and DDPM steps only and always starts from its own noise draw,
so `generate` below runs either sampler from a start state x_{t0} = start(x_1, c, ab_{t0}) built
from the same per-sample seeded x_1 (arms with the same seed share their noise).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch

from common.diffusion import ModelFn, NoiseSchedule
from common.sampling import (
    SampleNoise,
    SamplingSpec,
    balanced_labels,
    classifier_free_guidance,
    sample,
    sample_seeds,
    timesteps,
)

SAMPLERS = ("ddim", "dpm_solver_2m")
Start = Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor], torch.Tensor]  # (x_1, c, ab_t0) -> x_t0


def _alpha_sigma_lambda(schedule: NoiseSchedule, t: int):
    """(alpha_t, sigma_t, lambda_t) as float64 scalars; t = -1 is the data end (sigma = 0, lambda = inf)."""
    ab = schedule.alpha_bar(t)
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    return alpha, sigma, torch.log(alpha) - torch.log(sigma)


@torch.inference_mode()
def dpm_solver_2m(model_fn: ModelFn, schedule: NoiseSchedule, x: torch.Tensor, cond: Optional[torch.Tensor],
                  steps: Sequence[int], clip_x0: bool = True) -> torch.Tensor:
    """Integrate the probability-flow ODE from x at steps[0] through `steps` (descending) to data.

    x: [N, C, H, W] state at time steps[0]; returns x_0. `clip_x0` clamps every data prediction
    to [-1, 1], as the shared DDIM sampler does (diffusers: thresholding off, so tests pass False).
    """
    dtype = x.dtype
    x = x.double()
    prev = None  # (D, lambda) of the previous step
    for i, t in enumerate(steps):
        t_next = steps[i + 1] if i + 1 < len(steps) else -1
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = model_fn(x.to(dtype), tt, cond).double()
        alpha_s, sigma_s, lambda_s = _alpha_sigma_lambda(schedule, t)
        d = (x - sigma_s * eps) / alpha_s  # data prediction x0_theta(x_s, s)
        if clip_x0:
            d = d.clamp(-1, 1)
        alpha_t, sigma_t, lambda_t = _alpha_sigma_lambda(schedule, t_next)
        if t_next < 0:  # sigma_t = 0: the first-order step lands exactly on the data prediction
            x = d
        else:
            h = lambda_t - lambda_s
            phi = alpha_t * torch.expm1(-h)  # alpha_t (e^{-h} - 1)
            if prev is None:
                x = (sigma_t / sigma_s) * x - phi * d
            else:
                d_prev, lambda_prev = prev
                r = (lambda_s - lambda_prev) / h
                x = (sigma_t / sigma_s) * x - phi * d - 0.5 * phi * (d - d_prev) / r
        prev = (d, lambda_s)
    return x.to(dtype)


@torch.inference_mode()
def generate(model_fn: ModelFn, schedule: NoiseSchedule, spec: SamplingSpec, shape, num_classes: int,
             start: Optional[Start] = None, batch_size: int = 500) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images float [-1, 1], labels) of spec.num_samples samples with sampler `spec.method`.

    Sample j starts from x_1 drawn with its own seed (common.sampling.sample_seeds), labels are
    balanced; `start` (SingDiffusion) replaces x_1 by x_{t0} before the base sampler's first step
    t0 = steps[0]. Deterministic samplers only (DDIM eta = 0, DPM-Solver++(2M)).
    """
    if spec.method not in SAMPLERS:
        raise ValueError(f"unknown sampler '{spec.method}' (one of {SAMPLERS})")
    fn = classifier_free_guidance(model_fn, spec.guidance_scale, num_classes) if num_classes else model_fn
    steps = timesteps(spec.nfe, schedule.T, spec.spacing)
    seeds = sample_seeds(spec.seed, spec.num_samples)
    labels = balanced_labels(spec.num_samples, max(num_classes, 1))
    xs = []
    for s in range(0, spec.num_samples, batch_size):
        chunk = list(range(s, min(s + batch_size, spec.num_samples)))
        c = labels[chunk] if num_classes else None
        x = SampleNoise([seeds[j] for j in chunk], shape)()  # x_1 ~ N(0, I)
        if start is not None:
            x = start(x, c, schedule.alpha_bar(steps[0]))
        if spec.method == "ddim":  # eta = 0 draws its noise once, at the start: hand it x_{t0}
            x = sample(fn, schedule, lambda x=x: x, c, steps, "ddim", 0.0, spec.clip_x0)
        else:
            x = dpm_solver_2m(fn, schedule, x, c, steps, spec.clip_x0)
        xs.append(x)
    return torch.cat(xs), labels
