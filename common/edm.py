"""EDM (Karras et al., NeurIPS 2022): preconditioning, the training noise and loss, and a sampler.

Used by the transformer papers (common/dit.py networks; MaskDiT, the DiT baseline). Notation of the EDM
paper, Table 1, with the official MaskDiT code's values (train_utils/loss.py EDMLoss, models/maskdit.py
EDMPrecond):

    sigma = exp(P_mean + P_std n),  n ~ N(0, 1)            (P_mean = -1.2, P_std = 1.2)
    y = x + sigma eps                                      the noisy input
    D(y; sigma, c) = c_skip y + c_out F(c_in y, c_noise, c) the denoiser around the network F
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2),
    c_noise = ln(sigma) / 4                                 (sd = sigma_data = 0.5)
    lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2         so lambda c_out^2 = 1: the loss is O(1) at every sigma
    L = E lambda(sigma) || D(y; sigma, c) - x ||^2

The preconditioning is diffusers' own (`EDMEulerScheduler.precondition_inputs / precondition_noise /
precondition_outputs`, checked against the formulas above in tests/common/test_dit.py). The sampler is
diffusers' `EDMDPMSolverMultistepScheduler` (DPM-Solver++(2M), deterministic, Karras sigmas with rho = 7
from sigma_max to sigma_min then 0). The paper samples with EDM's Heun (2nd order, 2 network calls per
step); DPM-Solver++(2M) is a 2nd-order multistep method with 1 call per step, so `num_steps` is the NFE.

Randomness: every training draw comes from the loop's CPU generator in a fixed order (sigma, eps, then
what the caller draws, e.g. condition dropout and the mask), so a step is a function of (seed, step) and a
resumed run is bit-identical. Sampling: each sample's initial noise x_T = sigma_max z_j comes from its own
seed (common.sampling.SampleNoise), the sampler is deterministic, so a sample does not depend on the batch
it is drawn in (up to float reassociation in batched matmuls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, Tuple

import torch

from .devices import DeviceLike

# F(c_in y, c_noise, labels) -> raw network output, same shape as y
NetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EDM:
    """The EDM constants (values: params.yaml `dit.edm`)."""

    sigma_data: float
    p_mean: float
    p_std: float
    sigma_min: float
    sigma_max: float
    rho: float

    @classmethod
    def from_config(cls, cfg) -> EDM:
        return cls(cfg.sigma_data, cfg.p_mean, cfg.p_std, cfg.sigma_min, cfg.sigma_max, cfg.rho)

    def scheduler_config(self) -> dict:
        return dict(sigma_min=self.sigma_min, sigma_max=self.sigma_max, sigma_data=self.sigma_data, rho=self.rho,
                    sigma_schedule="karras", prediction_type="epsilon")

    def preconditioner(self):
        """diffusers' EDM preconditioning (stateless methods of an EDMEulerScheduler)."""
        from diffusers import EDMEulerScheduler

        return EDMEulerScheduler(**self.scheduler_config())

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (EDM Table 1)."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


def draw_noise(edm: EDM, x: torch.Tensor, generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sigma [N,1,1,1], sigma eps [N,C,H,W]): ln sigma ~ N(P_mean, P_std^2), then eps ~ N(0, I), in that order
    (EDMLoss: rnd_normal, then randn_like), drawn on the CPU generator and moved to x's device."""
    n = torch.randn((x.shape[0], 1, 1, 1), generator=generator)
    sigma = (n * edm.p_std + edm.p_mean).exp().to(x.device, x.dtype)
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return sigma, eps * sigma


def drop_labels(labels: torch.Tensor, p: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """Classifier-free guidance training: each label becomes `null_class` with probability p, drawn from the
    loop's generator (not from the network's own unseeded torch.rand, so a resumed run is identical)."""
    if p <= 0:
        return labels
    drop = (torch.rand(labels.shape[0], generator=generator) < p).to(labels.device)
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def denoise(net: NetFn, pre, y: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """D(y; sigma, c) = c_skip y + c_out F(c_in y, c_noise, c) with diffusers' EDM preconditioning `pre`."""
    c_noise = pre.precondition_noise(sigma.flatten())
    return pre.precondition_outputs(y, net(pre.precondition_inputs(y, sigma), c_noise, labels), sigma)


def edm_loss(net: NetFn, edm: EDM, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
             cond_dropout: float, null_class: int, pre=None) -> torch.Tensor:
    """EDM's loss on a batch: mean over samples and pixels of lambda(sigma) (D(x + n; sigma, c) - x)^2.
    Draw order: sigma, eps, then the condition dropout."""
    pre = pre or edm.preconditioner()
    sigma, n = draw_noise(edm, x, generator)
    labels = drop_labels(labels, cond_dropout, null_class, generator)
    d = denoise(net, pre, x + n, sigma, labels)
    return (edm.weight(sigma) * (d - x) ** 2).mean()


# --------------------------------------------------------------------------- sampling
def guided(net: NetFn, scale: float, null_class: int) -> NetFn:
    """Classifier-free guidance on the network output: F = F(., null) + w (F(., c) - F(., null)); D is affine in
    F, so this is guidance on the denoiser too. w = 1: the conditional network alone (one call)."""
    if scale == 1.0:
        return net

    def fn(x, c_noise, labels):
        both = net(torch.cat([x, x]), torch.cat([c_noise, c_noise]),
                   torch.cat([labels, torch.full_like(labels, null_class)]))
        f_c, f_u = both.chunk(2)
        return f_u + scale * (f_c - f_u)

    return fn


@torch.inference_mode()
def edm_sample(net: NetFn, edm: EDM, noise: torch.Tensor, labels: torch.Tensor, num_steps: int) -> torch.Tensor:
    """x_0 from x_T = sigma_max * noise with diffusers' EDMDPMSolverMultistepScheduler (num_steps network calls,
    each batched over the samples). `net` gets c_in x and c_noise, as in training."""
    from diffusers import EDMDPMSolverMultistepScheduler

    sched = EDMDPMSolverMultistepScheduler(**edm.scheduler_config())
    sched.set_timesteps(num_steps, device=noise.device)
    x = noise * sched.sigmas[0].to(noise.device, noise.dtype)  # x_T = sigma_max z (diffusers' init_noise_sigma
    for t in sched.timesteps:  # is sqrt(sigma_max^2 + 1), a VP convention; EDM starts at sigma_max)
        x_in = sched.scale_model_input(x, t)  # c_in x
        f = net(x_in, t.reshape(1).expand(x.shape[0]).to(x.dtype), labels)
        x = sched.step(f, t, x).prev_sample
    return x


def generate(net: NetFn, edm: EDM, shape: Sequence[int], num_samples: int, num_classes: int, num_steps: int,
             guidance_scale: float = 1.0, seed: int = 0, batch_size: int = 500,
             device: DeviceLike = None) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (images in [-1, 1] on the CPU, labels) chunk by chunk: sample j has label j mod K and initial noise
    from its own seed (common.sampling.sample_seeds / SampleNoise), so results do not depend on batch_size."""
    from .sampling import SampleNoise, balanced_labels, sample_seeds

    dev = torch.device("cpu" if device is None else device)
    seeds = sample_seeds(seed, num_samples)
    labels = balanced_labels(num_samples, num_classes)
    fn = guided(net, guidance_scale, num_classes)
    for s in range(0, num_samples, batch_size):
        chunk = slice(s, s + batch_size)
        noise = SampleNoise(seeds[chunk], shape, dev)()
        x = edm_sample(fn, edm, noise, labels[chunk].to(dev), num_steps)
        yield x.cpu(), labels[chunk]


def generate_all(*args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
    """All samples of `generate` (same arguments): (images [-1, 1], labels)."""
    xs, ys = zip(*generate(*args, **kwargs))
    return torch.cat(xs), torch.cat(ys)


def model_calls(num_samples: int, num_steps: int, guidance_scale: float) -> int:
    """Network evaluations summed over samples (guidance counts both branches)."""
    return num_samples * num_steps * (1 if guidance_scale == 1.0 else 2)
