"""Samplers with hook points: DDPM (ancestral) and DDIM, per-sample seeded generation, guidance.

The steps are written out here because papers change them *inside* a step, which a diffusers
`scheduler.step(...)` call does not expose. tests/common/test_diffusion.py checks every step
against diffusers' `DDIMScheduler` / `DDPMScheduler` on the same model and inputs.

Hook points (`Hooks`, all identity by default; papers subclass and override):
  condition(c, i, t)        condition transform          (CADS)
  timestep(x, i, t)         timestep remap: the model's time (Time-Shift sampler)
  next_timestep(x,i,t,t')   remap of the step's target time  (Time-Shift sampler)
  model_output(eps, x, i,t) per-step model-output transform (Epsilon Scaling)
  x0(x0, x, i, t)           first/last-step x0 override  (SingDiffusion, residual correction)
`i` is the step index (0 = first, from pure noise), `t` the training timestep.

Devices: the sampler runs on the device of its initial noise x_T, which `generate(..., device=)`
puts on the model's device (`SampleNoise` draws on the CPU, per sample, then moves the draw);
timesteps, labels and schedule values are moved to x's device where they meet it, so a hook may
return CPU tensors. `generate` hands the samples back on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from .devices import DeviceLike, to_device
from .diffusion import ModelFn, NoiseSchedule


# --------------------------------------------------------------------------- timesteps
def timesteps(num_steps: int, T: int = 1000, spacing: str = "linspace") -> List[int]:
    """Descending sampling timesteps, named as in diffusers' `timestep_spacing`.

    linspace: round(i (T-1)/(N-1)), i.e. ADM's respacing (first step at T-1);
    leading:  i * (T // N) (DDIM's default); trailing: round(T - i T/N) - 1.
    """
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, num_steps).round()[::-1]
    elif spacing == "leading":
        ts = (np.arange(num_steps) * (T // num_steps)).round()[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / num_steps)) - 1
    else:
        raise ValueError(f"unknown timestep spacing '{spacing}' (linspace | leading | trailing)")
    return [int(t) for t in ts]


# --------------------------------------------------------------------------- guidance
def classifier_free_guidance(model_fn: ModelFn, scale: float, null_class: int) -> ModelFn:
    """eps = eps(x, null) + w (eps(x, c) - eps(x, null)) (Ho & Salimans 2022); w = 1 is plain conditional."""
    if scale == 1.0:
        return model_fn

    def fn(x, t, c):
        both = model_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, torch.full_like(c, null_class)]))
        e_c, e_u = both.chunk(2)
        return e_u + scale * (e_c - e_u)

    return fn


# --------------------------------------------------------------------------- samplers
Time = Union[int, torch.Tensor]  # one timestep for the batch, or a LongTensor [N] of per-sample timesteps


class Hooks:
    """Identity hooks; a paper overrides the ones its method changes (see module docstring)."""

    def condition(self, c, i: int, t: Time):
        return c

    def timestep(self, x, i: int, t: int) -> Time:
        return t

    def next_timestep(self, x, i: int, t: Time, t_next: int) -> Time:
        return t_next

    def model_output(self, eps, x, i: int, t: Time):
        return eps

    def x0(self, x0, x, i: int, t: Time):
        return x0


class SampleNoise:
    """Per-sample seeded noise: sample j's x_T and step noises depend only on its own seed.

    So a sample is the same whatever the batch size or the number of processes. The draws come
    from CPU generators (the same numbers on every device) and are moved to `device` (default CPU).
    """

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], device: DeviceLike = None):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shape = tuple(shape)
        self.device = torch.device("cpu" if device is None else device)

    def __call__(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens]).to(self.device)


def _ab(schedule: NoiseSchedule, t: Time, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar(t) broadcastable against x (float64 scalar, or [N, 1, 1, 1] for per-sample t)."""
    ab = schedule.alpha_bar(t).to(x.device)
    return ab.reshape(-1, *([1] * (x.dim() - 1))) if ab.dim() else ab


def ddim_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """DDIM, Song et al. 2021 eq. (12): x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - s^2) eps + s z."""
    ab, ab_prev = _ab(schedule, t, x), _ab(schedule, t_prev, x)
    sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    out = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and noise is not None:
        out = out + sigma * noise
    return out.to(x.dtype)


def ddpm_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """Ancestral DDPM step on the (respaced) chain: posterior q(x_{t'} | x_t, x0), DDPM eqs. (6)-(7).

    beta_t here is 1 - ab_t / ab_{t'} (ADM's respacing), variance = posterior variance ("fixed_small");
    no noise is added where t' = -1 (the last step).
    """
    ab, ab_prev = _ab(schedule, t, x), _ab(schedule, t_prev, x)
    beta = 1 - ab / ab_prev
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    coef_xt = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = coef_x0 * x0 + coef_xt * x
    if noise is not None:
        var = (1 - ab_prev) / (1 - ab) * beta
        if torch.is_tensor(t_prev):  # per-sample target times (a hook's): a mask on x's device
            keep = (t_prev >= 0).to(x.dtype).to(x.device)
            keep = keep.reshape(-1, *([1] * (x.dim() - 1))) if keep.dim() else keep
        else:
            keep = float(t_prev >= 0)
        mean = mean + keep * var.clamp(min=1e-20).sqrt() * noise
    return mean.to(x.dtype)


STEPS = {"ddim": ddim_step, "ddpm": ddpm_step}


def sample(model_fn: ModelFn, schedule: NoiseSchedule, noise: SampleNoise, cond, steps: Sequence[int],
           method: str = "ddim", eta: float = 0.0, clip_x0: bool = True, hooks: Optional[Hooks] = None):
    """Run a sampler from x_T ~ noise() through `steps` (descending training timesteps) to x_0.

    Per step i: t = timestep(x, t_i) (the model's time), c = condition(c), eps = model_output(eps_theta(x, t, c)),
    x0 = x0-hook(clip(predict_x0(x, eps))), eps re-derived from the clipped x0 (as ADM and diffusers do),
    then the DDIM or DDPM update to t' = next_timestep(x, t_{i+1}) (-1 = data). Hooks may return
    per-sample LongTensor timesteps.
    """
    hooks = hooks or Hooks()
    step_fn = STEPS[method]
    x = noise()
    for i, t_nominal in enumerate(steps):
        t = hooks.timestep(x, i, t_nominal)
        t_next = hooks.next_timestep(x, i, t, steps[i + 1] if i + 1 < len(steps) else -1)
        c = hooks.condition(cond, i, t)
        tt = t.to(x.device) if torch.is_tensor(t) else torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = hooks.model_output(model_fn(x, tt, c), x, i, t)
        x0 = schedule.predict_x0(x, eps, t)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = schedule.predict_eps(x, x0, t)
        x0 = hooks.x0(x0, x, i, t)
        needs_noise = (method == "ddpm" or eta > 0) and bool((torch.as_tensor(t_next) >= 0).any())
        x = step_fn(schedule, x, eps, x0, t, t_next, eta, noise() if needs_noise else None)
    return x


@dataclass
class SamplingSpec:
    """Everything that defines a set of samples, so it can be logged and reproduced."""

    num_samples: int
    nfe: int
    method: str = "ddim"
    eta: float = 0.0
    spacing: str = "linspace"
    guidance_scale: float = 1.0
    seed: int = 0
    clip_x0: bool = True


def sample_seeds(seed: int, n: int) -> List[int]:
    """Per-sample seeds of a sampling run: seed s, sample j -> a fixed 63-bit integer."""
    base = np.random.SeedSequence([int(seed), 0x5A3]).generate_state(n, dtype=np.uint64)
    return [int(v) >> 1 for v in base]


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """Labels 0,1,..,K-1,0,1,.. so every class is equally represented."""
    return torch.arange(n) % num_classes


@torch.inference_mode()
def generate(model_fn: ModelFn, schedule: NoiseSchedule, spec: SamplingSpec, shape, num_classes: int,
             batch_size: int = 500, hooks_factory: Callable[[], Hooks] = Hooks, progress: bool = False,
             indices: Optional[Sequence[int]] = None, device: DeviceLike = None) -> Iterator[tuple]:
    """Yield (images float [-1,1], labels) chunk by chunk, on the CPU; results do not depend on batch_size.

    `indices` restricts to a shard of sample indices (multi-process evaluation). `device`: where the
    sampler runs, the model's device (default CPU); the seeded noise is drawn on the CPU and moved there.
    """
    from tqdm.auto import tqdm

    null = num_classes
    fn = classifier_free_guidance(model_fn, spec.guidance_scale, null) if num_classes else model_fn
    steps = timesteps(spec.nfe, schedule.T, spec.spacing)
    seeds = sample_seeds(spec.seed, spec.num_samples)
    labels = balanced_labels(spec.num_samples, max(num_classes, 1))
    idx = list(range(spec.num_samples)) if indices is None else list(indices)
    noise_device = torch.device("cpu" if device is None else device)
    bar = tqdm(total=len(idx), desc=f"sampling {spec.method} nfe={spec.nfe}", disable=not progress, leave=False)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        c = to_device(labels[chunk], noise_device) if num_classes else None
        x = sample(fn, schedule, SampleNoise([seeds[j] for j in chunk], shape, noise_device), c, steps,
                   spec.method, spec.eta, spec.clip_x0, hooks_factory())
        bar.update(len(chunk))
        yield x.cpu(), labels[chunk]
    bar.close()


def generate_all(*args, **kwargs):
    """All samples of `generate` concatenated: (images [-1,1], labels)."""
    xs, ys = zip(*generate(*args, **kwargs))
    return torch.cat(xs), torch.cat(ys)

