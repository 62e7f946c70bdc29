"""Epsilon Scaling -- Ning, Li, Su, Salah, Ertugrul,
"Elucidating the Exposure Bias in Diffusion Models", ICLR 2024 (arXiv:2308.15321).

Exposure bias: at sampling time the network sees x_t produced by its own previous steps, not by
the forward process, and the paper measures that its prediction eps_theta(x_t, t) then has a larger
norm than on training inputs. Epsilon Scaling (ES) is training-free: at every sampling step the
predicted noise is divided by a scalar lambda_t > 1 before it enters the x0 estimate (Sec. 5):

    x0_hat = (x_t - sqrt(1 - ab_t) * eps_theta(x_t, t) / lambda_t) / sqrt(ab_t)          (ES in ADM)

and the sampler continues unchanged from x0_hat (clipped to [-1, 1], as in the official ADM-ES
code, before the posterior mean; DDIM then re-derives eps from the clipped x0_hat).

Two schedules for lambda (Sec. 5, Table 1 and the "kt+b" rows):
    uniform:  lambda_t = b                         (b = 1.017 for ADM on CIFAR-10)
    linear:   lambda_t = k * t' + b                (t' = respaced step index, 0 = last step)

Everything else (the network, the noise schedule, the sampler) is the shared substrate in
common/sampling.py; this file only changes the model output, through the sampler's
`model_output` hook.
"""

from __future__ import annotations

from common.sampling import Hooks


def epsilon_scale(i: int, num_steps: int, b: float, k: float = 0.0) -> float:
    """lambda at sampling step i (i = 0 is the first step, from pure noise): k * t' + b, t' = N - 1 - i."""
    t_prime = num_steps - 1 - i
    return k * t_prime + b


def linear_k_for_mean(b_mean: float, b0: float, num_steps: int) -> float:
    """The k of a linear schedule starting at b0 on the last step whose mean over the N steps is b_mean.

    The paper's linear rows keep the mean of lambda fixed (ADM-ES: lambda_i = 1.011 - k(T'-1)/2 + k i).
    """
    return 2.0 * (b_mean - b0) / max(num_steps - 1, 1)


class EpsilonScaling(Hooks):
    """Sampler hook: eps_theta / lambda_t at every step (`scale_first_step=False` leaves step 0 as is)."""

    def __init__(self, num_steps: int, b: float, k: float = 0.0, scale_first_step: bool = True):
        self.num_steps, self.b, self.k, self.scale_first_step = num_steps, b, k, scale_first_step

    def model_output(self, eps, x, i, t):
        if i == 0 and not self.scale_first_step:
            return eps
        return eps / epsilon_scale(i, self.num_steps, self.b, self.k)
