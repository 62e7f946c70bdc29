"""DDPM-IP -- Ning, Sangineto, Porrello, Calderara, Cucchiara,
"Input Perturbation Reduces Exposure Bias in Diffusion Models", ICML 2023 (arXiv:2301.11706).

Exposure bias: a DDPM is trained on x_t from the forward process but sampled from its own x_t,
whose error the network never saw. DDPM-IP perturbs the *network input* during training with
extra Gaussian noise and keeps the regression target unchanged (Sec. 4, Algorithm 1):

    x_t = sqrt(ab_t) * x0 + sqrt(1 - ab_t) * (eps + gamma * xi),   eps, xi ~ N(0, I) independent
    L   = || eps - eps_theta(x_t, t) ||^2                            (target: eps, not eps + gamma*xi)

gamma = 0.1 in general, 0.15 for CIFAR-10 (official README). Sampling is unchanged.
The official code (guided_diffusion/gaussian_diffusion.py, training_losses) draws eps first, then
xi, and passes eps + gamma*xi to q_sample. `input_perturbation(gamma)` below is that network-input
noise; papers/ddpm_ip/train.py hands it to the shared trainer (common.diffusion_training), whose
loss (common.diffusion.denoising_loss, DDPM eq. 14) calls it right after drawing eps, so the draws
come in the official order and the baseline arm (gamma = 0) is the shared base model's recipe.
Equivalent view (author, issue #27): x_t = sqrt(ab) x0 + sqrt(1-ab) sqrt(1+gamma^2) eps~,
a larger noise level whose target is correlated with, but not equal to, the input noise.
"""

from __future__ import annotations

from typing import Optional

import torch

from common.diffusion import NoiseInput, NoiseSchedule, denoising_loss


def input_perturbation(gamma: float) -> Optional[NoiseInput]:
    """Algorithm 1's network-input noise: eps -> eps + gamma * xi, xi ~ N(0, I) drawn from the step's
    generator after eps. gamma = 0 is plain DDPM: None (no xi is drawn, the random stream is the base model's)."""
    if not gamma:
        return None

    def perturbed_noise(eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        xi = torch.randn(eps.shape, generator=generator).to(eps.device)
        return eps + gamma * xi

    return perturbed_noise


def perturbed_x_t(schedule: NoiseSchedule, x0, t, eps, xi, gamma: float):
    """The network input of Algorithm 1: sqrt(ab) x0 + sqrt(1 - ab) (eps + gamma xi)."""
    return schedule.q_sample(x0, t, eps + gamma * xi)


def input_perturbation_loss(model_fn, schedule: NoiseSchedule, x0, cond, generator: torch.Generator,
                            gamma: float, cond_dropout: float = 0.0, null_class=None):
    """|| eps - eps_theta(perturbed_x_t, t, c) ||^2 with t, eps, xi drawn from `generator` in that order."""
    return denoising_loss(model_fn, schedule, x0, cond, generator, cond_dropout, null_class,
                          noise_input=input_perturbation(gamma))


def ip_optimal_eps(x_t, alpha_bar, data_var: float, gamma: float):
    """Minimiser of the IP loss for Gaussian data N(0, data_var I) (derived here;
    checked by a Monte Carlo fit in tests/papers/test_ddpm_ip.py). Least squares eps ~ a x_t with
    Cov(eps, x_t) = sqrt(1 - ab), Var(x_t) = ab s^2 + (1 - ab)(1 + gamma^2) (s^2 = data_var), so a = Cov / Var:

        eps*_IP(x_t) = sqrt(1 - ab) x_t / (ab s^2 + (1 - ab)(1 + gamma^2))

    gamma = 0 gives the usual E[eps | x_t]; at high noise IP acts like epsilon scaling with
    lambda ~ 1 + gamma^2, which is why the two methods are compared on one page.
    """
    ab = torch.as_tensor(alpha_bar, dtype=x_t.dtype)
    return (1 - ab).sqrt() * x_t / (ab * data_var + (1 - ab) * (1 + gamma**2))
