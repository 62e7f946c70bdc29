"""The shared sampler: one loop with hook points, step rules from common/samplers.py, per-sample seeds.

The loop is written out here because papers change things *inside* a step, which a diffusers
`scheduler.step(...)` call does not expose. The step rules (DDIM with eta, ancestral DDPM, Euler,
DPM-Solver++(2M)) live in common/samplers.py and are checked step for step against diffusers'
schedulers of the same name (tests/common/test_samplers.py); tests/common/test_diffusion.py checks
whole DDIM / DDPM runs against DDIMScheduler / DDPMScheduler.

Hook points (`Hooks`, all identity by default; papers subclass and override):
  start(x_T, c, t_0, gens)   the start state, with per-sample generators  (SingDiffusion, CADS)
  condition(c, i, t)         condition transform
  embedding(y, c, i, t)      condition-embedding transform (conditional branch) (CADS)
  guidance(w, t)             per-step guidance scale                      (CADS's dynamic-CFG baseline)
  timestep(x, i, t)          timestep remap: the model's time
  next_timestep(x,i,t,t')    remap of the step's target time              (Time-Shift sampler)
  model_output(eps, x, i,t)  per-step model-output transform              (Epsilon Scaling)
  x0(x0, x, i, t)            first/last-step x0 override                  (residual correction)
`i` is the step index (0 = first, from pure noise), `t` the training timestep.

Sampling timesteps: `SamplingSpec.timesteps` (explicit, e.g. an optimised schedule) or `nfe` steps
spaced by `spacing`. Cost: `generate_samples` counts the network evaluations and the sampler's
model-function evaluations per sample (NFE) as it runs (`SampleSet`).

Devices: the sampler runs on the device of its initial noise x_T, which `generate(..., device=)`
puts on the model's device (`SampleNoise` draws on the CPU, per sample, then moves the draw);
timesteps, labels and schedule values are moved to x's device where they meet it, so a hook may
return CPU tensors. `generate` hands the samples back on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .devices import DeviceLike, to_device
from .diffusion import ModelFn, NoiseSchedule
from .samplers import RULES, Time, ddim_step, ddpm_step, step_rule

__all__ = ["Hooks", "SampleNoise", "SampleSet", "SamplingSpec", "balanced_labels", "classifier_free_guidance",
           "ddim_step", "ddpm_step", "generate", "generate_all", "generate_samples", "sample", "sample_seeds",
           "timesteps"]


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
Scale = Union[float, Callable[[torch.Tensor], torch.Tensor]]  # w, or w(t): LongTensor [N] -> [N]


def classifier_free_guidance(model_fn: ModelFn, scale: Scale, null_class: int) -> ModelFn:
    """eps = eps(x, null) + w (eps(x, c) - eps(x, null)) (Ho & Salimans 2022); w = 1 is plain conditional.

    `scale` is a number, or a function of the model's timesteps t [N] giving per-sample w(t) (guidance
    schedules such as CADS's dynamic-CFG baseline). The condition is class labels, or condition
    embeddings [N, D] (float; then the null branch gets the null class's embedding, `model_fn.embed`).
    """
    if not callable(scale) and scale == 1.0:
        return model_fn
    embed = getattr(model_fn, "embed", None)

    def fn(x, t, c):
        if c.is_floating_point():
            null = embed(torch.full((c.shape[0],), null_class, dtype=torch.long, device=c.device))
        else:
            null = torch.full_like(c, null_class)
        both = model_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, null]))
        e_c, e_u = both.chunk(2)
        w = scale(t) if callable(scale) else scale
        if torch.is_tensor(w):  # per-sample w(t) [N]
            w = w.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return e_u + w * (e_c - e_u)

    fn.embed = embed
    return fn


# --------------------------------------------------------------------------- hooks and noise
class Hooks:
    """Identity hooks; a paper overrides the ones its method changes (see module docstring)."""

    def start(self, x, c, t: int, gens: Optional[List[torch.Generator]]):
        """The state the first step starts from, given x_T, the condition and the first timestep t.
        `gens`: one CPU generator per sample for the hooks' own draws (None when the noise is not per-sample
        seeded), independent of the sampler's noise stream: drawing from them changes no other draw."""
        return x

    def condition(self, c, i: int, t: Time):
        return c

    def embedding(self, y, c, i: int, t: Time):
        """Condition embeddings y [N, D] of the conditional branch (labels c) -> y. Overriding it makes the
        sampler condition the network on embeddings (`model_fn.embed`, e.g. common.diffusion.unet_fn)."""
        return y

    def guidance(self, w: float, t: torch.Tensor):
        """Guidance scale for the model's timesteps t [N]: w, or per-sample [N]. `generate` adds classifier-free
        guidance (class-conditional models) and consults this hook when a paper overrides it."""
        return w

    def timestep(self, x, i: int, t: int) -> Time:
        return t

    def next_timestep(self, x, i: int, t: Time, t_next: int) -> Time:
        return t_next

    def model_output(self, eps, x, i: int, t: Time):
        return eps

    def x0(self, x0, x, i: int, t: Time):
        return x0


def _overrides(hooks: Hooks, name: str) -> bool:
    """Whether a paper's hooks replace hook `name` (the embedding and guidance paths are taken only then)."""
    return getattr(type(hooks), name) is not getattr(Hooks, name)


def _stream_seed(seed: int, stream: int) -> int:
    """A 63-bit seed for another random stream of the same sample."""
    return int(np.random.SeedSequence([int(seed), stream]).generate_state(1, dtype=np.uint64)[0]) >> 1


class SampleNoise:
    """Per-sample seeded noise: sample j's x_T and step noises depend only on its own seed.

    So a sample is the same whatever the batch size or the number of processes. The draws come
    from CPU generators (the same numbers on every device) and are moved to `device` (default CPU).
    `hook_generators()` gives the hooks their own per-sample stream (`Hooks.start`).
    """

    HOOK_STREAM = 1

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], device: DeviceLike = None):
        self.seeds = [int(s) for s in seeds]
        self.gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.shape = tuple(shape)
        self.device = torch.device("cpu" if device is None else device)

    def __call__(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.gens]).to(self.device)

    def hook_generators(self) -> List[torch.Generator]:
        return [torch.Generator().manual_seed(_stream_seed(s, self.HOOK_STREAM)) for s in self.seeds]


# --------------------------------------------------------------------------- the sampler
def sample(model_fn: ModelFn, schedule: NoiseSchedule, noise: Callable[[], torch.Tensor], cond, steps: Sequence[int],
           method: str = "ddim", eta: float = 0.0, clip_x0: bool = True, hooks: Optional[Hooks] = None,
           calls: Optional[List[int]] = None) -> torch.Tensor:
    """Run the sampler `method` (common.samplers.RULES) from x_T ~ noise() through `steps` (descending
    training timesteps) to x_0.

    x = start(x_T); per step i: t = timestep(x, t_i) (the model's time), c = condition(c) (and embedding(...)
    when a paper conditions on embeddings), eps = model_output(eps_theta(x, t, c)), x0 =
    x0-hook(clip(predict_x0(x, eps))), eps re-derived from the clipped x0 (as ADM and diffusers do), then the
    rule's update to t' = next_timestep(x, t_{i+1}) (-1 = data). Hooks may return per-sample LongTensor
    timesteps. `calls`, if given, gets the number of model-function evaluations appended (the NFE).
    """
    hooks = hooks or Hooks()
    rule = step_rule(method, eta)
    by_embedding = _overrides(hooks, "embedding")
    if by_embedding and getattr(model_fn, "embed", None) is None:
        raise TypeError("a hook conditions on embeddings, but the model function has no `embed` "
                        "(common.diffusion.unet_fn of a class-conditional UNet has one)")
    x = noise()
    x = hooks.start(x, cond, steps[0], getattr(noise, "hook_generators", lambda: None)())
    nfe = 0
    for i, t_nominal in enumerate(steps):
        t = hooks.timestep(x, i, t_nominal)
        t_next = hooks.next_timestep(x, i, t, steps[i + 1] if i + 1 < len(steps) else -1)
        c = hooks.condition(cond, i, t)
        if by_embedding:
            c = hooks.embedding(model_fn.embed(c), c, i, t)
        tt = t.to(x.device) if torch.is_tensor(t) else torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = hooks.model_output(model_fn(x, tt, c), x, i, t)
        nfe += 1
        x0 = schedule.predict_x0(x, eps, t)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = schedule.predict_eps(x, x0, t)
        x0 = hooks.x0(x0, x, i, t)
        needs_noise = rule.stochastic and bool((torch.as_tensor(t_next) >= 0).any())
        x = rule.step(schedule, x, eps, x0, t, t_next, noise() if needs_noise else None)
    if calls is not None:
        calls.append(nfe)
    return x


@dataclass
class SamplingSpec:
    """Everything that defines a set of samples, so it can be logged and reproduced.

    `timesteps`: explicit descending training timesteps (an optimised schedule); None: `nfe` steps spaced
    by `spacing`. `method`: a step rule of common.samplers.RULES; `eta` belongs to DDIM.
    """

    num_samples: int
    nfe: int
    method: str = "ddim"
    eta: float = 0.0
    spacing: str = "linspace"
    guidance_scale: float = 1.0
    seed: int = 0
    clip_x0: bool = True
    timesteps: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        if self.method not in RULES:
            raise ValueError(f"unknown sampler '{self.method}' (one of {sorted(RULES)})")
        if self.timesteps is not None:
            ts = tuple(int(t) for t in self.timesteps)
            if len(ts) != self.nfe or any(a <= b for a, b in zip(ts, ts[1:])) or ts[-1] < 0:
                raise ValueError(f"SamplingSpec.timesteps must be {self.nfe} (= nfe) strictly decreasing timesteps "
                                 f">= 0, got {list(ts)}")
            self.timesteps = ts

    def steps(self, num_train_timesteps: int) -> List[int]:
        """The sampler's descending training timesteps."""
        if self.timesteps is None:
            return timesteps(self.nfe, num_train_timesteps, self.spacing)
        if self.timesteps[0] >= num_train_timesteps:
            raise ValueError(f"SamplingSpec.timesteps start at {self.timesteps[0]} >= T = {num_train_timesteps}")
        return list(self.timesteps)


def sample_seeds(seed: int, n: int) -> List[int]:
    """Per-sample seeds of a sampling run: seed s, sample j -> a fixed 63-bit integer."""
    base = np.random.SeedSequence([int(seed), 0x5A3]).generate_state(n, dtype=np.uint64)
    return [int(v) >> 1 for v in base]


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """Labels 0,1,..,K-1,0,1,.. so every class is equally represented."""
    return torch.arange(n) % num_classes


class _CountedNetwork:
    """The network function, counting its evaluations summed over samples (a batch of B rows is B)."""

    def __init__(self, model_fn: ModelFn):
        self.model_fn, self.calls = model_fn, 0
        self.embed = getattr(model_fn, "embed", None)

    def __call__(self, x, t, c):
        self.calls += x.shape[0]
        return self.model_fn(x, t, c)


@torch.inference_mode()
def generate(model_fn: ModelFn, schedule: NoiseSchedule, spec: SamplingSpec, shape, num_classes: int,
             batch_size: int = 500, hooks_factory: Callable[[], Hooks] = Hooks, progress: bool = False,
             indices: Optional[Sequence[int]] = None, device: DeviceLike = None,
             cost: Optional[dict] = None) -> Iterator[tuple]:
    """Yield (images float [-1,1], labels) chunk by chunk, on the CPU; results do not depend on batch_size.

    `model_fn` is the network (classifier-free guidance at spec.guidance_scale is added here, for a
    class-conditional model). `indices` restricts to a shard of sample indices (multi-process evaluation).
    `device`: where the sampler runs, the model's device (default CPU); the seeded noise is drawn on the CPU
    and moved there. `cost`, if given, is filled with the network evaluations summed over samples
    ("model_calls") and the sampler's model-function evaluations per sample ("nfe").
    """
    from tqdm.auto import tqdm

    net = _CountedNetwork(model_fn)
    steps = spec.steps(schedule.T)
    seeds = sample_seeds(spec.seed, spec.num_samples)
    labels = balanced_labels(spec.num_samples, max(num_classes, 1))
    idx = list(range(spec.num_samples)) if indices is None else list(indices)
    noise_device = torch.device("cpu" if device is None else device)
    nfe: List[int] = []
    bar = tqdm(total=len(idx), desc=f"sampling {spec.method} nfe={spec.nfe}", disable=not progress, leave=False)
    for s in range(0, len(idx), batch_size):
        chunk = idx[s : s + batch_size]
        hooks = hooks_factory()
        scale: Scale = spec.guidance_scale
        if _overrides(hooks, "guidance"):
            scale = lambda t, h=hooks, w=spec.guidance_scale: h.guidance(w, t)  # noqa: E731
        fn = classifier_free_guidance(net, scale, num_classes) if num_classes else net
        c = to_device(labels[chunk], noise_device) if num_classes else None
        x = sample(fn, schedule, SampleNoise([seeds[j] for j in chunk], shape, noise_device), c, steps,
                   spec.method, spec.eta, spec.clip_x0, hooks, nfe)
        if cost is not None:
            cost.update(model_calls=net.calls, nfe=max(nfe))
        bar.update(len(chunk))
        yield x.cpu(), labels[chunk]
    bar.close()


@dataclass
class SampleSet:
    """A set of samples and what it cost: `model_calls` network evaluations summed over samples (guidance
    counts both branches), `nfe` model-function evaluations per sample (the sampler's steps)."""

    images: torch.Tensor  # float [-1, 1], CPU
    labels: torch.Tensor
    model_calls: int
    nfe: int


def generate_samples(*args, **kwargs) -> SampleSet:
    """All samples of `generate` (same arguments, except `cost`), with their cost counted by the sampler."""
    cost = {"model_calls": 0, "nfe": 0}
    xs, ys = zip(*generate(*args, cost=cost, **kwargs))
    return SampleSet(torch.cat(xs), torch.cat(ys), cost["model_calls"], cost["nfe"])


def generate_all(*args, **kwargs):
    """All samples of `generate` concatenated: (images [-1,1], labels)."""
    s = generate_samples(*args, **kwargs)
    return s.images, s.labels
