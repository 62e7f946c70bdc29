"""Gaussian diffusion: noise schedule, forward process, prediction conversions, training loss.

The schedule comes from diffusers' `DDPMScheduler` (same betas, same alphas_cumprod). Samplers
live in common/sampling.py, so a sampler change does not invalidate trained models (DVC tracks
this file as a dependency of the training stages).

Devices (common/devices.py): the schedule's tables stay on the CPU in float64 and each lookup is
moved to the tensor it scales; the loss draws its randomness from the CPU generator and moves it
to the data's device; `unet_fn` hands the network its inputs on the network's device.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .devices import module_device, to_device

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
    def from_config(cls, cfg) -> NoiseSchedule:
        return cls(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    def alpha_bar(self, t) -> torch.Tensor:
        """ab_t as float64; accepts ints or tensors, t = -1 means the clean end (ab = 1)."""
        t = torch.as_tensor(t)  # on t's device (a per-sample timestep a hook computed on the GPU stays there)
        ab = torch.where(t >= 0, self.alphas_cumprod.to(t.device)[t.clamp(min=0)],
                         torch.ones((), dtype=torch.float64, device=t.device))
        return ab

    def _bc(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        v = v.to(x.dtype).to(x.device)  # cast first: float64 need not exist on x's device
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


# --------------------------------------------------------------------------- training loss
NoiseInput = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def denoising_loss(model_fn: ModelFn, schedule: NoiseSchedule, x0, cond, generator: torch.Generator,
                   cond_dropout: float = 0.0, null_class: Optional[int] = None,
                   noise_input: Optional[NoiseInput] = None):
    """Simple epsilon-prediction loss, DDPM eq. (14): || eps - eps_theta(x_t, t, c) ||^2.

    `cond_dropout` replaces the class by `null_class` with that probability (classifier-free
    guidance training). `noise_input(eps, generator)`, if given, returns the noise the network input
    x_t is built from in place of eps (the target stays eps); it is called right after eps is drawn
    and may draw from `generator` (DDPM-IP's input perturbation, papers/ddpm_ip/method.py).
    All randomness comes from `generator` (a CPU generator: the same draws on every device), so a
    step is reproducible from (seed, step); the draws are moved to x0's device where they are used.
    Draw order: t, eps, whatever `noise_input` draws, then the condition dropout.
    """
    n, dev = x0.shape[0], x0.device
    t = torch.randint(0, schedule.T, (n,), generator=generator)
    eps = torch.randn(x0.shape, generator=generator).to(dev)
    noise_in = eps if noise_input is None else noise_input(eps, generator)
    if cond is not None and cond_dropout > 0:
        drop = (torch.rand(n, generator=generator) < cond_dropout).to(cond.device)
        cond = torch.where(drop, torch.full_like(cond, null_class), cond)
    x_t = schedule.q_sample(x0, t, noise_in)
    return torch.mean((eps - model_fn(x_t, t.to(dev), cond)) ** 2)


# --------------------------------------------------------------------------- model adapter
def unet_fn(unet) -> ModelFn:
    """Adapt a diffusers UNet2DModel to model_fn(x, t, c) -> eps (first C output channels).

    The network gets x, t and c on its own device, and eps comes back on x's device: the samplers
    of common/sampling.py run on the network's device (no copy), a caller holding CPU tensors gets
    CPU tensors back. c is class labels (LongTensor [N]) or, for a class-conditional UNet, condition
    embeddings y [N, D] (float), the rows `fn.embed(labels)` of its class-embedding table: papers that
    change the embedding itself (CADS) condition on y (`Hooks.embedding` in common/sampling.py).
    """
    table = getattr(unet, "class_embedding", None)

    def fn(x, t, c):
        dev = module_device(unet)
        if c is not None and c.is_floating_point():  # embeddings: bypass the label table for this call
            unet.class_embedding = torch.nn.Identity()
            try:
                out = unet(x.to(dev), to_device(t, dev), class_labels=c.to(dev)).sample
            finally:
                unet.class_embedding = table
        else:
            out = unet(x.to(dev), to_device(t, dev), class_labels=to_device(c, dev)).sample
        return out[:, : x.shape[1]].to(x.device)

    def embed(c: torch.Tensor) -> torch.Tensor:
        """Class labels [N] -> their embeddings [N, D] (on c's device)."""
        return table(c.to(module_device(unet))).to(c.device)

    fn.embed = embed if isinstance(table, torch.nn.Embedding) else None
    return fn
