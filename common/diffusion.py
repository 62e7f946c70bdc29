"""Gaussian diffusion: schedule, forward process, training loss and DDPM/DDIM samplers with hooks.

The schedule comes from diffusers' `DDPMScheduler` (same betas, same alphas_cumprod); the
sampler steps are written out here because papers change them *inside* a step, which a
`scheduler.step(...)` call does not expose. tests/common/test_diffusion.py checks every
step against diffusers' `DDIMScheduler` / `DDPMScheduler` on the same model and inputs.

Hook points (`Hooks`, all identity by default; papers subclass and override):
  condition(c, i, t)        condition transform          (CADS)
  timestep(x, i, t)         timestep remap               (Time-Shift sampler)
  model_output(eps, x, i,t) per-step model-output transform (Epsilon Scaling)
  x0(x0, x, i, t)           first/last-step x0 override  (SingDiffusion, residual correction)
`i` is the step index (0 = first, from pure noise), `t` the training timestep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch

ModelFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]], torch.Tensor]


# --------------------------------------------------------------------------- schedule
class NoiseSchedule:
    """alpha_bar(t) for t in 0..T-1 (DDPM notation: x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps); alpha_bar(-1) = 1."""

    def __init__(self, num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02):
        from diffusers import DDPMScheduler

        self.diffusers_config = dict(
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
            beta_start=beta_start, beta_end=beta_end,
        )
        ref = DDPMScheduler(**self.diffusers_config)
        self.T = num_train_timesteps
        self.betas = ref.betas.double()
        self.alphas_cumprod = ref.alphas_cumprod.double()

    @classmethod
    def from_config(cls, cfg) -> "NoiseSchedule":
        return cls(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    def alpha_bar(self, t) -> torch.Tensor:
        """ab_t as float64; accepts ints or tensors, t = -1 means the clean end (ab = 1)."""
        t = torch.as_tensor(t)
        ab = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones((), dtype=torch.float64))
        return ab

    def _bc(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        v = v.to(x.dtype)
        return v.reshape(-1, *([1] * (x.dim() - 1))) if v.dim() else v

    def q_sample(self, x0, t, noise):
        """Forward process, DDPM eq. (4): x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps."""
        ab = self._bc(self.alpha_bar(t), x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t, eps, t):
        """x0-hat = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)."""
        ab = self._bc(self.alpha_bar(t), x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def predict_eps(self, x_t, x0, t):
        """eps = (x_t - sqrt(ab_t) x0) / sqrt(1 - ab_t)."""
        ab = self._bc(self.alpha_bar(t), x_t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


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


# --------------------------------------------------------------------------- training loss
def denoising_loss(model_fn: ModelFn, schedule: NoiseSchedule, x0, cond, generator: torch.Generator,
                   cond_dropout: float = 0.0, null_class: Optional[int] = None, input_perturbation: float = 0.0):
    """Simple epsilon-prediction loss, DDPM eq. (14): || eps - eps_theta(x_t, t, c) ||^2.

    `cond_dropout` replaces the class by `null_class` with that probability (classifier-free
    guidance training). `input_perturbation` is DDPM-IP's gamma (0 = plain DDPM).
    All randomness comes from `generator`, so a step is reproducible from (seed, step).
    """
    n = x0.shape[0]
    t = torch.randint(0, schedule.T, (n,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator)
    xi = torch.randn(x0.shape, generator=generator) if input_perturbation else None
    if cond is not None and cond_dropout > 0:
        drop = torch.rand(n, generator=generator) < cond_dropout
        cond = torch.where(drop, torch.full_like(cond, null_class), cond)
    noise_in = eps if xi is None else eps + input_perturbation * xi
    x_t = schedule.q_sample(x0, t, noise_in)
    return torch.mean((eps - model_fn(x_t, t, cond)) ** 2)


# --------------------------------------------------------------------------- guidance
def unet_fn(unet) -> ModelFn:
    """Adapt a diffusers UNet2DModel to model_fn(x, t, c) -> eps (first C output channels)."""

    def fn(x, t, c):
        out = unet(x, t, class_labels=c).sample
        return out[:, : x.shape[1]]

    return fn


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
class Hooks:
    """Identity hooks; a paper overrides the ones its method changes (see module docstring)."""

    def condition(self, c, i: int, t: int):
        return c

    def timestep(self, x, i: int, t: int) -> int:
        return t

    def model_output(self, eps, x, i: int, t: int):
        return eps

    def x0(self, x0, x, i: int, t: int):
        return x0


class SampleNoise:
    """Per-sample seeded noise: sample j's x_T and step noises depend only on its own seed.

    So a sample is the same whatever the batch size or the number of processes.
    """

    def __init__(self, seeds: Sequence[int], shape: Sequence[int]):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.shape = tuple(shape)

    def __call__(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens])


def ddim_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """DDIM, Song et al. 2021 eq. (12): x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - s^2) eps + s z."""
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    out = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and noise is not None:
        out = out + sigma * noise
    return out.to(x.dtype)


def ddpm_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """Ancestral DDPM step on the (respaced) chain: posterior q(x_{t'} | x_t, x0), DDPM eqs. (6)-(7).

    beta_t here is 1 - ab_t / ab_{t'} (ADM's respacing), variance = posterior variance ("fixed_small").
    """
    ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
    beta = 1 - ab / ab_prev
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    coef_xt = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = coef_x0 * x0 + coef_xt * x
    var = (1 - ab_prev) / (1 - ab) * beta
    if t_prev >= 0 and noise is not None:
        mean = mean + var.clamp(min=1e-20).sqrt() * noise
    return mean.to(x.dtype)


STEPS = {"ddim": ddim_step, "ddpm": ddpm_step}


def sample(model_fn: ModelFn, schedule: NoiseSchedule, noise: SampleNoise, cond, steps: Sequence[int],
           method: str = "ddim", eta: float = 0.0, clip_x0: bool = True, hooks: Optional[Hooks] = None):
    """Run a sampler from x_T ~ noise() through `steps` (descending training timesteps) to x_0.

    Per step: c_i = condition(c), t_i = timestep(x, t), eps = model_output(eps_theta(x, t_i, c_i)),
    x0 = x0-hook(clip(predict_x0(x, eps))), eps re-derived from the clipped x0 (as ADM and diffusers do),
    then the DDIM or DDPM update to the next timestep (-1 = data).
    """
    hooks = hooks or Hooks()
    step_fn = STEPS[method]
    x = noise()
    for i, t in enumerate(steps):
        t_prev = steps[i + 1] if i + 1 < len(steps) else -1
        t = hooks.timestep(x, i, t)
        c = hooks.condition(cond, i, t)
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        eps = hooks.model_output(model_fn(x, tt, c), x, i, t)
        x0 = schedule.predict_x0(x, eps, t)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = schedule.predict_eps(x, x0, t)
        x0 = hooks.x0(x0, x, i, t)
        needs_noise = (method == "ddpm" or eta > 0) and t_prev >= 0
        x = step_fn(schedule, x, eps, x0, t, t_prev, eta, noise() if needs_noise else None)
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
             indices: Optional[Sequence[int]] = None) -> Iterator[tuple]:
    """Yield (images float [-1,1], labels) chunk by chunk; results do not depend on batch_size.

    `indices` restricts to a shard of sample indices (multi-process evaluation).
    """
    from tqdm.auto import tqdm

    null = num_classes
    fn = classifier_free_guidance(model_fn, spec.guidance_scale, null) if num_classes else model_fn
    steps = timesteps(spec.nfe, schedule.T, spec.spacing)
    seeds = sample_seeds(spec.seed, spec.num_samples)
    labels = balanced_labels(spec.num_samples, max(num_classes, 1))
    idx = list(range(spec.num_samples)) if indices is None else list(indices)
    bar = tqdm(total=len(idx), desc=f"sampling {spec.method} nfe={spec.nfe}", disable=not progress, leave=False)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        c = labels[chunk] if num_classes else None
        x = sample(fn, schedule, SampleNoise([seeds[j] for j in chunk], shape), c, steps,
                   spec.method, spec.eta, spec.clip_x0, hooks_factory())
        bar.update(len(chunk))
        yield x, labels[chunk]
    bar.close()


def generate_all(*args, **kwargs):
    """All samples of `generate` concatenated: (images [-1,1], labels)."""
    xs, ys = zip(*generate(*args, **kwargs))
    return torch.cat(xs), torch.cat(ys)

