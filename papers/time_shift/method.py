"""Time-Shift sampler -- Li, Qu, Yao, Sun, Moens, "Alleviating Exposure Bias in Diffusion Models
through Sampling with Shifted Time Steps", ICLR 2024 (arXiv:2305.15583).

Exposure bias: the sample x_hat reached by the sampler at nominal time t does not carry the noise
level of a forward-process x_t. The paper finds that a nearby time step t_s "couples" better with
it, and picks t_s by matching noise levels (Sec. 4): the per-sample pixel variance of the state,

    sigma_hat^2 = Var(x)  over all C*H*W entries (unbiased),

is compared with the forward-process variance 1 - ab_tau of candidate steps tau in a window of
w steps around the nominal next step t', and the step lands on

    t_s = argmin_{tau in [t' - w//2, t' + w//2]} (sigma_hat^2 - (1 - ab_tau))^2,

only while t' > t_c (the cutoff; at low noise the image's own variance dominates Var(x)) and
never on the first step. Semantics follow the official DDIM/DDPM code path
(Mingxiao-Li/TS-DPM, sampler/pnm_solver.py: `apply_time_shift`): the variance is taken of the
current state, the window is centred on the nominal next step, the update lands on t_s, and the
model keeps being queried at the nominal times. The window is clipped to [0, T-1]. A window wider
than the step spacing can land a step on a time noisier than the current one; the update is then the
shared DDIM's deterministic step to t_s (common/samplers.py: `ddim_step`), no variance term.

Everything else is the shared sampler (common/sampling.py); this file only remaps the step's
target time, through its `next_timestep` hook. No retraining, no extra model calls.
"""

from __future__ import annotations

import torch

from common.sampling import Hooks


def sample_variance(x: torch.Tensor) -> torch.Tensor:
    """sigma_hat^2 per sample: unbiased variance over all C*H*W entries. [N, C, H, W] -> [N]."""
    return x.flatten(1).var(dim=1)


def shifted_timestep(var: torch.Tensor, t_next: int, window: int, cutoff: int,
                     noise_var: torch.Tensor) -> torch.Tensor:
    """t_s per sample (LongTensor [N]); `noise_var[tau]` = 1 - ab_tau for tau = 0..T-1.

    Returns t_next unchanged for every sample when t_next <= cutoff.
    """
    n = var.shape[0]
    if t_next <= cutoff:
        return torch.full((n,), t_next, dtype=torch.long)
    h = window // 2
    lo, hi = max(t_next - h, 0), min(t_next + h, len(noise_var) - 1)
    candidates = noise_var[lo : hi + 1].to(var.device, var.dtype)  # [W]
    return lo + torch.argmin((var[:, None] - candidates[None, :]) ** 2, dim=1)


class TimeShift(Hooks):
    """Sampler hook: land each step on the window step whose noise variance matches the sample's."""

    def __init__(self, schedule, window: int, cutoff: int):
        self.noise_var = (1 - schedule.alphas_cumprod).to(torch.float64)
        self.window, self.cutoff = window, cutoff
        self.chosen = []  # per step: (nominal t', LongTensor of t_s), for the report

    def next_timestep(self, x, i, t, t_next):
        if i == 0 or t_next < 0:  # not on the first step; the last step lands on data
            return t_next
        t_s = shifted_timestep(sample_variance(x.double()), t_next, self.window, self.cutoff, self.noise_var)
        self.chosen.append((t_next, t_s))
        return t_s
