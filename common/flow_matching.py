"""Flow matching with t = 1 at the DATA end (the SiT / Lumina-T2X convention), sampled with diffusers'
`FlowMatchEulerDiscreteScheduler`, whose time runs the other way.

Training (Lumina-T2X `transport/path.py`, ICPlan; `transport/transport.py`, training_losses):

    x0 ~ N(0, I) (noise),  x1 = data,  t ~ U(0, 1) or sigmoid(N(0, 1)) ("lognorm", the ImageNet runs)
    x_t = t x1 + (1 - t) x0,   u_t = x1 - x0,   L = || v(x_t, t) - u_t ||^2        (mean over pixels)

Sampling integrates dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data). The official sampler runs
torchdiffeq's Euler on t_k = k / N, optionally shifted t' = t / (t + s - s t).

diffusers' scheduler uses sigma = 1 at the NOISE end: x_sigma = (1 - sigma) x_data + sigma noise,
model output = noise - data, timestep = 1000 sigma. So (checked in tests/papers/test_lumina_flag_dit.py):

    sigma = 1 - t,   timestep = 1000 (1 - t),   scheduler model output = -v,
    Lumina's shift s  ==  the scheduler's `shift=s`:  1 - s sigma / (1 + (s - 1) sigma) = t / (t + s - s t).

`flow_matching_scheduler` hands the scheduler the sigmas 1 - k/N (k < N), so after its shift and its
appended terminal 0 the Euler grid is exactly the official t_k = shift(k / N), k = 0..N (diffusers' default
grid instead ends at sigma_min = 1/1000 and shifts that end twice).
"""

from __future__ import annotations

from typing import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # v(x_t, t), t of shape [B] in [0, 1]
NUM_TRAIN_TIMESTEPS = 1000  # the scheduler's timestep = 1000 sigma


def sample_t(n: int, generator: torch.Generator, kind: str = "uniform") -> torch.Tensor:
    """t ~ U(0, 1) ("uniform", the T2I default) or sigmoid(N(0, 1)) ("lognorm", the ImageNet runs; mean 0.5)."""
    if kind == "uniform":
        return torch.rand(n, generator=generator)
    if kind == "lognorm":
        return torch.sigmoid(torch.randn(n, generator=generator))
    raise ValueError(f"unknown t distribution {kind!r} (uniform | lognorm)")


def interpolate(x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor):
    """(x_t, u_t) of the linear path: x_t = t x1 + (1 - t) x0, u_t = x1 - x0 (x1 data, x0 noise)."""
    tb = t.reshape(-1, *([1] * (x1.dim() - 1))).to(x1)
    return tb * x1 + (1 - tb) * x0, x1 - x0


def flow_matching_loss(velocity: VelocityFn, x1: torch.Tensor, generator: torch.Generator,
                       t_kind: str = "uniform") -> torch.Tensor:
    """|| v(x_t, t) - (x1 - x0) ||^2, averaged over pixels and batch. Draws x0, then t, from `generator`
    (the official order: Transport.sample draws x0 = randn_like(x1) first) on the CPU."""
    x0 = torch.randn(x1.shape, generator=generator).to(x1)
    t = sample_t(x1.shape[0], generator, t_kind).to(x1.device)
    x_t, u = interpolate(x1, x0, t)
    return ((velocity(x_t, t) - u) ** 2).mean()


def lumina_time(timestep: torch.Tensor) -> torch.Tensor:
    """The scheduler's timestep (1000 sigma, 1000 = noise) as Lumina's t (0 = noise, 1 = data)."""
    return 1.0 - timestep / NUM_TRAIN_TIMESTEPS


def time_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Lumina-T2X's sampling time shift (transport/integrators.py, ode): t' = t / (t + s - s t)."""
    return t / (t + shift - shift * t)


def flow_matching_scheduler(steps: int, shift: float = 1.0):
    """diffusers' FlowMatchEulerDiscreteScheduler set to the official Euler grid t_k = shift(k / steps)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=shift)
    sched.set_timesteps(sigmas=(1.0 - torch.arange(steps, dtype=torch.float64) / steps).tolist())
    return sched


@torch.no_grad()
def euler_sample(velocity: VelocityFn, noise: torch.Tensor, steps: int, shift: float = 1.0) -> torch.Tensor:
    """x at t = 1 from x = `noise` at t = 0: `steps` Euler steps of dx/dt = v through the diffusers scheduler
    (its output convention: -v at timestep 1000 (1 - t))."""
    sched = flow_matching_scheduler(steps, shift)
    x = noise
    for timestep in sched.timesteps:
        t = lumina_time(timestep).to(x).expand(x.shape[0])
        x = sched.step(-velocity(x, t), timestep, x).prev_sample
    return x
