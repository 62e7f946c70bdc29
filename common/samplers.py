"""Step rules of the shared sampler: one update x_t -> x_{t'} each, behind one interface.

common/sampling.py runs the loop (the model call, the hooks, x0 clipping, the noise draws); a rule
only turns the model's prediction at t into the state at t'. The rules are written out here, not
wrapped from diffusers, because papers change things *inside* a step (the target time, x0, eps),
which `scheduler.step(...)` does not expose; tests/common/test_samplers.py checks each rule step for
step against the diffusers scheduler of the same name on the same timesteps and model outputs.

Notation (DDPM): x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps; alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t).
t and t' are training timesteps, ints or per-sample LongTensors [N] (a hook's); t' = -1 is the data
end (ab = 1). A rule gets eps and x0 consistent with each other (x0 = (x - sigma_t eps) / alpha_t, or
x0 clipped and eps re-derived from it), and `noise` ~ N(0, I) shaped like x when it is `stochastic`
and some sample has t' >= 0, else None. A rule object serves one trajectory (multistep rules keep
their history on it); `step_rule(name, eta)` makes a fresh one.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .diffusion import NoiseSchedule

Time = Union[int, torch.Tensor]  # one timestep for the batch, or a LongTensor [N] of per-sample timesteps


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """v as a scalar, or [N] reshaped to [N, 1, 1, 1] against x."""
    return v.reshape(-1, *([1] * (x.dim() - 1))) if v.dim() else v


def _ab(schedule: NoiseSchedule, t: Time, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar(t) broadcastable against x (float64 scalar, or [N, 1, 1, 1] for per-sample t)."""
    return _per_sample(schedule.alpha_bar(t).to(x.device), x)


def ddim_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """DDIM, Song et al. 2021 eq. (12): x_{t'} = sqrt(ab') x0 + sqrt(1 - ab' - s^2) eps + s z.

    s^2 = eta^2 (1 - ab') / (1 - ab) (1 - ab / ab') is negative where t' is noisier than t (a Time-Shift
    window reaching past the step spacing): there it is 0, the deterministic step, as the official
    Time-Shift code steps (its sqrt of a negative number times eta = 0 would be NaN here).
    """
    ab, ab_prev = _ab(schedule, t, x), _ab(schedule, t_prev, x)
    sigma = eta * torch.sqrt(((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)).clamp(min=0))
    out = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0 and noise is not None:
        out = out + sigma * noise
    return out.to(x.dtype)


def ddpm_step(schedule, x, eps, x0, t, t_prev, eta: float, noise: Optional[torch.Tensor]):
    """Ancestral DDPM step on the (respaced) chain: posterior q(x_{t'} | x_t, x0), DDPM eqs. (6)-(7).

    beta_t here is 1 - ab_t / ab_{t'} (ADM's respacing), variance = posterior variance ("fixed_small");
    no noise is added where t' = -1 (the last step). `eta` is unused (one signature for both steps).
    """
    ab, ab_prev = _ab(schedule, t, x), _ab(schedule, t_prev, x)
    beta = 1 - ab / ab_prev
    coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
    coef_xt = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
    mean = coef_x0 * x0 + coef_xt * x
    if noise is not None:
        var = (1 - ab_prev) / (1 - ab) * beta
        if torch.is_tensor(t_prev):  # per-sample target times (a hook's): a mask on x's device
            keep = _per_sample((t_prev >= 0).to(x.dtype).to(x.device), x)
        else:
            keep = float(t_prev >= 0)
        mean = mean + keep * var.clamp(min=1e-20).sqrt() * noise
    return mean.to(x.dtype)


# --------------------------------------------------------------------------- the rules
class StepRule:
    """x_{t'} from x_t and the model's prediction at t (see the module docstring)."""

    stochastic = False  # whether `step` needs a noise draw

    def step(self, schedule: NoiseSchedule, x: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor, t: Time,
             t_next: Time, noise: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class DDIM(StepRule):
    """DDIM (Song et al. 2021, eq. 12); eta = 0 deterministic, eta = 1 the DDPM posterior's variance."""

    def __init__(self, eta: float = 0.0):
        if eta < 0:
            raise ValueError(f"DDIM eta must be >= 0, got {eta}")
        self.eta, self.stochastic = eta, eta > 0

    def step(self, schedule, x, eps, x0, t, t_next, noise):
        return ddim_step(schedule, x, eps, x0, t, t_next, self.eta, noise)


class DDPM(StepRule):
    """Ancestral sampling from the DDPM posterior (Ho et al. 2020, Algorithm 2, on the respaced chain)."""

    stochastic = True

    def step(self, schedule, x, eps, x0, t, t_next, noise):
        return ddpm_step(schedule, x, eps, x0, t, t_next, 0.0, noise)


class Euler(StepRule):
    """Euler on the probability-flow ODE in sigma = sqrt((1 - ab) / ab) (Karras et al. 2022, Algorithm 1
    without churn): the VE state x / sqrt(ab) moves by (sigma' - sigma) eps. The same map as DDIM at eta = 0,
    with another rounding; written in the variables of diffusers' EulerDiscreteScheduler."""

    def step(self, schedule, x, eps, x0, t, t_next, noise):
        ab, ab_next = _ab(schedule, t, x), _ab(schedule, t_next, x)
        sigma, sigma_next = ((1 - ab) / ab).sqrt(), ((1 - ab_next) / ab_next).sqrt()
        return (ab_next.sqrt() * (x / ab.sqrt() + (sigma_next - sigma) * eps)).to(x.dtype)


class DPMSolverPP2M(StepRule):
    """DPM-Solver++(2M): Lu, Zhou, Bao, Chen, Li, Zhu 2022 (arXiv:2211.01095), Algorithm 2 (multistep,
    data prediction D = x0, order 2). With lambda = log(alpha / sigma) and h = lambda_t' - lambda_t,

        x_t' = (sigma_t' / sigma_t) x_t - alpha_t' (e^{-h} - 1) (D_t + (D_t - D_prev) / (2 r)),  r = h_prev / h,

    first order (the D_prev term dropped, = DDIM) on the first step (no history) and on the step that
    lands on data (sigma = 0: x = D), as diffusers' DPMSolverMultistepScheduler(solver_order=2,
    algorithm_type="dpmsolver++", final_sigmas_type="zero") does. One model call per step.
    """

    def __init__(self):
        self.prev = None  # (D, lambda) of the previous step

    def step(self, schedule, x, eps, x0, t, t_next, noise):
        ab, ab_next = _ab(schedule, t, x), _ab(schedule, t_next, x)
        lam = 0.5 * (ab.log() - (1 - ab).log())
        lam_next = 0.5 * (ab_next.log() - (1 - ab_next).log())  # +inf at the data end
        h = lam_next - lam
        d = x0
        if self.prev is not None:
            d_prev, lam_prev = self.prev
            r = (lam - lam_prev) / h
            d = x0 + (x0 - d_prev) / (2 * r)
        phi = ab_next.sqrt() * torch.expm1(-h)  # alpha_t' (e^{-h} - 1)
        out = ((1 - ab_next) / (1 - ab)).sqrt() * x - phi * d
        self.prev = (x0, lam)
        final = _per_sample(torch.as_tensor(t_next).to(x.device) < 0, x)  # sigma_t' = 0: first order, x = D
        return torch.where(final, x0, out).to(x.dtype)


RULES = {"ddim": DDIM, "ddpm": DDPM, "euler": Euler, "dpm_solver_2m": DPMSolverPP2M}


def step_rule(method: str, eta: float = 0.0) -> StepRule:
    """A fresh rule for one trajectory. `eta` belongs to DDIM; the other rules refuse eta != 0."""
    if method not in RULES:
        raise ValueError(f"unknown sampler '{method}' (one of {sorted(RULES)})")
    if method == "ddim":
        return DDIM(eta)
    if eta != 0:
        raise ValueError(f"sampler '{method}' has no eta (got eta={eta}); eta belongs to 'ddim'")
    return RULES[method]()
