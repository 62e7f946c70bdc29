"""Align Your Steps -- Sabour, Fidler, Kreis, "Align Your Steps: Optimizing Sampling Schedules in
Diffusion Models", ICML 2024 (arXiv:2404.14507).

The sampling schedule t_min = t_0 < t_1 < ... < t_n = t_max (noise levels, EDM form sigma(t) = t,
s(t) = 1) is chosen by minimising an upper bound on the KL divergence (KLUB) between the true
generative SDE and the linear SDE that a first-order solver solves exactly on each interval, where
the denoiser is frozen at the interval's upper end (Sec. 3.2):

    KLUB(t_0..t_n) = sum_i int_{t_{i-1}}^{t_i} t^-3 E ||D(x_t, t) - D(x_{t_i}, t_i)||^2 dt      (Eqs. 10, 11)
    x_t = x_0 + t n_1,   x_{t_i} = x_t + sqrt(t_i^2 - t^2) n_2,   x_0 ~ data

(constant factors dropped). The integral is estimated by Monte Carlo with importance sampling in t
(Sec. 3.3, Eq. 15; Algorithm 2): t ~ pi(t) proportional to the Gaussian-data integrand
t^-3 (1/(t^2+c^2) - 1/(t_i^2+c^2)) with c = 0.5 (Lemma 3.3, Eq. 14), whose integral is closed form.
One interior point is optimised at a time: r candidates in a neighbourhood of t_i (the current value
among them), the local KLUB of (t_{i-1}, candidate, t_{i+1}) estimated for each, the argmin kept
(Algorithm 1). In practice (Sec. 3.3, App. B.1): a 10-step schedule is initialised from a
hand-crafted one (time-uniform for discrete-time models), optimised with early stopping (App. A.3:
the KLUB-optimal schedule is not the output-KL-optimal one), then subdivided twice -- new points at
log-midpoints, t'_{2i} = t_i, log t'_{2i+1} = (log t_i + log t_{i+1}) / 2 -- and only the new points
refined. Other step counts come from log-linear interpolation over the step index (NVIDIA's howto).

A discrete-time eps-prediction DDPM is put in this form by x_t^DDPM = sqrt(ab_t) (x_0 + sigma_t n),
sigma_t = sqrt((1 - ab_t) / ab_t): the denoiser at level sigma is D(x, sigma) = x - sigma eps(sqrt(ab) x, t(sigma))
with ab = 1 / (1 + sigma^2), and DDIM (eta = 0) is exactly Euler in sigma on D (common/samplers.py's
`Euler` rule; tests/papers/test_align_your_steps.py checks both against the `Denoiser`). The sampler is
the shared one, run on the schedule's timesteps (`SamplingSpec.timesteps`, `schedule_timesteps`).

Conventions: a schedule is the published form, noise levels in *descending* order
[sigma_max, ..., sigma_min] (n + 1 values for n steps). The sampler evaluates the model at the first
n levels and its last step lands on sigma = 0 ("the last sigma is set to 0", NVIDIA howto / ComfyUI),
so sigma_min only enters through the KLUB. Internal KLUB functions use the paper's ascending t.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

C_IMPORTANCE = 0.5  # Sec. 3.3: the importance-sampling density assumes Gaussian data of std c = 0.5


# --------------------------------------------------------------------------- DDPM <-> EDM form
def ddpm_sigmas(alphas_cumprod) -> np.ndarray:
    """sigma_t = sqrt((1 - ab_t) / ab_t) for t = 0..T-1 (the VE noise level of x_t / sqrt(ab_t)), ascending."""
    ab = np.asarray(alphas_cumprod, dtype=np.float64)
    return np.sqrt((1.0 - ab) / ab)


def sigma_to_timestep(sigma, sigma_table: np.ndarray, integer: bool = True):
    """Training timestep(s) whose noise level matches sigma: nearest in log sigma (integer=True), or the
    fractional t of log-sigma interpolation (the model's time input for off-grid levels)."""
    log_s = np.log(np.asarray(sigma, dtype=np.float64))
    log_table = np.log(sigma_table)
    if not integer:
        return np.interp(log_s, log_table, np.arange(len(sigma_table), dtype=np.float64))
    idx = np.searchsorted(log_table, log_s).clip(1, len(log_table) - 1)
    lower_closer = (log_s - log_table[idx - 1]) < (log_table[idx] - log_s)
    return np.where(lower_closer, idx - 1, idx).astype(np.int64)


class Denoiser:
    """D_theta(x, sigma, c) = E[x_0 | x] in EDM form, from an eps-prediction DDPM `model_fn(x, t, c)`.

    x is the VE-form sample x_0 + sigma n; the model sees sqrt(ab) x at the (fractional) training
    timestep of sigma, ab = 1 / (1 + sigma^2). `calls` counts network evaluations per sample.
    """

    def __init__(self, model_fn: Callable, alphas_cumprod, batch_size: int = 1024):
        self.model_fn = model_fn
        self.sigma_table = ddpm_sigmas(alphas_cumprod)
        self.batch_size = batch_size
        self.calls = 0

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        t = torch.from_numpy(sigma_to_timestep(sigma.numpy(), self.sigma_table, integer=False)).float()
        scale = (1.0 / (1.0 + sigma**2)).sqrt().to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        s = sigma.to(x.dtype).view_as(scale)
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            sl = slice(i, i + self.batch_size)
            eps = self.model_fn(x[sl] * scale[sl], t[sl], None if c is None else c[sl])
            out.append(x[sl] - s[sl] * eps)
        self.calls += x.shape[0]
        return torch.cat(out)


# --------------------------------------------------------------------------- KLUB for Gaussian data (Lemma 3.3)
def _gaussian_antiderivative(t, t_upper, c: float):
    """G(t) = int t^-3 (1/(t^2 + c^2) - 1/(t_upper^2 + c^2)) dt (with u = t^2, partial fractions)."""
    t, t_upper = np.asarray(t, dtype=np.float64), np.asarray(t_upper, dtype=np.float64)
    y = c**2 / t**2
    return 0.5 * ((np.log1p(y) - y) / c**4 + 1.0 / ((t_upper**2 + c**2) * t**2))


def gaussian_partial_klub(a, x, t_upper, c: float):
    """int_a^x t^-3 (1/(t^2 + c^2) - 1/(t_upper^2 + c^2)) dt: the unnormalised mass of pi (Eq. 15) on [a, x]."""
    return _gaussian_antiderivative(x, t_upper, c) - _gaussian_antiderivative(a, t_upper, c)


def gaussian_interval_klub(a, b, c: float):
    """One interval's KLUB for N(0, c^2 I) data, per unit c^4 d (Lemma 3.3 in Eq. 10, i.e. Eq. 14)."""
    return gaussian_partial_klub(a, b, b, c)


def gaussian_klub(t: Sequence[float], c: float) -> float:
    """KLUB of an ascending schedule t_0 < ... < t_n for N(0, c^2 I) data, per unit c^4 d (Eq. 14)."""
    t = np.asarray(t, dtype=np.float64)
    return float(np.sum(gaussian_interval_klub(t[:-1], t[1:], c)))


def sample_importance(t: np.ndarray, u: np.ndarray, c: float = C_IMPORTANCE) -> Tuple[np.ndarray, np.ndarray, float]:
    """Inverse-CDF draws from pi(t) over [t_0, t_n] (Eq. 15), piecewise on the intervals of ascending t.

    Returns (t samples, their interval's upper end t_upper, normaliser Z = int pi~). Bisection in log t.
    """
    t = np.asarray(t, dtype=np.float64)
    mass = gaussian_interval_klub(t[:-1], t[1:], c)
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    target = np.asarray(u, dtype=np.float64) * cum[-1]
    j = np.clip(np.searchsorted(cum, target, side="right") - 1, 0, len(mass) - 1)
    a, upper, rest = t[j], t[j + 1], target - cum[j]
    lo, hi = np.log(a), np.log(upper)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = gaussian_partial_klub(a, np.exp(mid), upper, c) < rest
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.exp(0.5 * (lo + hi)), upper, float(cum[-1])


# --------------------------------------------------------------------------- KLUB Monte Carlo (Algorithm 2)
class KLUBBatch:
    """Common random numbers of one estimate: data x_0 (+ labels), noises n_1, n_2, stratified uniforms u.

    Every candidate schedule of a point update is estimated on the same numbers, so their KLUB
    differences are far less noisy than the estimates themselves.
    """

    def __init__(self, x0: torch.Tensor, labels: Optional[torch.Tensor], generator: torch.Generator):
        m = x0.shape[0]
        self.x0, self.labels = x0, labels
        self.n1 = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        self.n2 = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        u = (torch.arange(m, dtype=torch.float64) + torch.rand(m, generator=generator, dtype=torch.float64)) / m
        self.u = u[torch.randperm(m, generator=generator)].numpy()  # stratified in t, shuffled against x_0


def estimate_klub(denoiser: Callable, batch: KLUBBatch, schedules: Sequence[np.ndarray],
                  c: float = C_IMPORTANCE) -> Tuple[np.ndarray, np.ndarray]:
    """KLUB of each ascending schedule (over its whole span), with its Monte Carlo standard error.

    Per draw (Algorithm 2): t ~ pi, t_upper = the schedule point above t, x_t = x_0 + t n_1,
    x_upper = x_t + sqrt(t_upper^2 - t^2) n_2, weight ||D(x_t, t) - D(x_upper, t_upper)||^2 / (pi~(t) t^3);
    the estimate is Z times the mean weight (Z normalises pi, so candidates are comparable).
    All schedules go through the network in one batch.
    """
    m = batch.x0.shape[0]
    xs, sig, norms, zs = [], [], [], []
    for t in schedules:
        ts, up, z = sample_importance(np.asarray(t, dtype=np.float64), batch.u, c)
        ts_, up_ = torch.from_numpy(ts).to(batch.x0.dtype), torch.from_numpy(up).to(batch.x0.dtype)
        shape = (-1, *([1] * (batch.x0.dim() - 1)))
        x_t = batch.x0 + ts_.view(shape) * batch.n1
        x_up = x_t + (up_**2 - ts_**2).clamp(min=0).sqrt().view(shape) * batch.n2
        xs += [x_t, x_up]
        sig += [torch.from_numpy(ts), torch.from_numpy(up)]
        norms.append(1.0 / (ts**2 + c**2) - 1.0 / (up**2 + c**2))
        zs.append(z)
    labels = None if batch.labels is None else batch.labels.repeat(2 * len(schedules))
    d = denoiser(torch.cat(xs), torch.cat(sig), labels).double().view(2 * len(schedules), m, -1)
    sq = ((d[0::2] - d[1::2]) ** 2).sum(-1).numpy()  # [num_schedules, m]
    w = sq / np.maximum(np.stack(norms), 1e-300) * np.asarray(zs)[:, None]
    return w.mean(1), w.std(1, ddof=1) / np.sqrt(m)


# --------------------------------------------------------------------------- optimisation (Algorithm 1)
def candidates(t: np.ndarray, i: int, num: int = 11, reach: float = 0.5,
               grid: Optional[np.ndarray] = None) -> np.ndarray:
    """Candidate values for t_i: the current one plus (num - 1) points spread in log t towards both
    neighbours, up to `reach` of the gap. Strictly inside (t_{i-1}, t_{i+1}), sorted, unique.

    With a `grid` (allowed levels, e.g. a DDPM's 1000 sigmas) candidates are snapped to it and keep at
    least one grid level free on each side, so that the schedule can still be subdivided."""
    lo, mid, hi = np.log(t[i - 1]), np.log(t[i]), np.log(t[i + 1])
    k = np.arange(1, (num - 1) // 2 + 1) / ((num - 1) // 2)
    cand = np.exp(np.concatenate([mid - reach * (mid - lo) * k, [mid], mid + reach * (hi - mid) * k]))
    if grid is not None:
        idx = sigma_to_timestep(cand, grid)
        lo_idx, hi_idx = sigma_to_timestep([t[i - 1], t[i + 1]], grid)
        cand = grid[idx[(idx >= lo_idx + 2) & (idx <= hi_idx - 2)]]
    cand = np.unique(np.concatenate([cand, [t[i]]]))
    return cand[(cand > t[i - 1]) & (cand < t[i + 1])]


def optimize_points(denoiser: Callable, data: Tuple[torch.Tensor, Optional[torch.Tensor]], t: np.ndarray,
                    points: Sequence[int], num_draws: int, generator: torch.Generator, num_candidates: int = 11,
                    reach: float = 0.5, grid: Optional[np.ndarray] = None, c: float = C_IMPORTANCE) -> Tuple[np.ndarray, bool]:
    """One pass of Algorithm 1 over `points` (indices into ascending t): each t_i <- the candidate with the
    least local KLUB of (t_{i-1}, candidate, t_{i+1}) (Eqs. 11-12). Returns (new t, whether anything changed)."""
    x_data, y_data = data
    t = np.array(t, dtype=np.float64)
    changed = False
    for i in points:
        cand = candidates(t, i, num_candidates, reach, grid)
        pick = torch.randint(0, x_data.shape[0], (num_draws,), generator=generator)
        batch = KLUBBatch(x_data[pick], None if y_data is None else y_data[pick], generator)
        klub, _ = estimate_klub(denoiser, batch, [np.array([t[i - 1], v, t[i + 1]]) for v in cand], c)
        best = cand[int(np.argmin(klub))]
        changed |= bool(best != t[i])
        t[i] = best
    return t, changed


def subdivide(t: np.ndarray, grid: Optional[np.ndarray] = None) -> np.ndarray:
    """Twice the steps: t'_{2i} = t_i, log t'_{2i+1} = (log t_i + log t_{i+1}) / 2 (Sec. 3.3); new points
    snapped to `grid` (strictly inside their interval) when given."""
    t = np.asarray(t, dtype=np.float64)
    mids = np.sqrt(t[:-1] * t[1:])
    if grid is not None:
        snapped = grid[sigma_to_timestep(mids, grid)]
        for k, (a, b) in enumerate(zip(t[:-1], t[1:])):
            inside = grid[(grid > a) & (grid < b)]
            if len(inside) == 0:
                raise ValueError(f"cannot subdivide the interval ({a:.5g}, {b:.5g}): no grid level strictly inside")
            if not a < snapped[k] < b:
                snapped[k] = inside[np.argmin(np.abs(np.log(inside) - np.log(mids[k])))]
        mids = snapped
    out = np.empty(2 * len(t) - 1)
    out[0::2], out[1::2] = t, mids
    return out


def align_your_steps(denoiser: Callable, data, sigmas: Sequence[float], max_sweeps: int, num_draws: int,
                     generator: torch.Generator, proxy: Optional[Callable[[np.ndarray], float]] = None,
                     patience: int = 1, refine_rounds: int = 0, refine_sweeps: int = 1, **kw) -> Tuple[List[np.ndarray], List[dict]]:
    """The hierarchical optimisation of Sec. 3.3 / App. B.1, from a descending initial schedule.

    Coarse stage: passes of Algorithm 1 over all interior points until nothing changes, `max_sweeps`
    is reached, or -- early stopping (App. A.3) -- `proxy(sigmas)` (a perceptual metric, lower is better)
    has not improved for `patience` passes; the best schedule by proxy is kept. Then `refine_rounds`
    times: subdivide and run `refine_sweeps` passes over the new points only (their neighbours frozen).
    Returns ([coarse, refined_1, ...] descending schedules, history of the coarse passes).
    `kw` goes to `optimize_points` (num_candidates, reach, grid, c).
    """
    t = np.asarray(sigmas, dtype=np.float64)[::-1].copy()
    inner = range(1, len(t) - 1)
    score = proxy(t[::-1].copy()) if proxy else None
    history = [{"sweep": 0, "sigmas": t[::-1].tolist(), "proxy": score, "changed": None}]
    best, best_sweep, best_score, since_best = t.copy(), 0, score, 0
    for sweep in range(1, max_sweeps + 1):
        t, changed = optimize_points(denoiser, data, t, inner, num_draws, generator, **kw)
        score = proxy(t[::-1].copy()) if proxy and changed else score
        history.append({"sweep": sweep, "sigmas": t[::-1].tolist(), "proxy": score, "changed": changed})
        if proxy is None or score < best_score:
            best, best_sweep, best_score, since_best = t.copy(), sweep, score, 0
        else:
            since_best += 1
        if not changed or since_best >= patience:
            break
    for h in history:
        h["kept"] = h["sweep"] == best_sweep
    stages = [best]
    grid = kw.get("grid")
    for _ in range(refine_rounds):
        t = subdivide(stages[-1], grid)
        for _ in range(refine_sweeps):
            t, _ = optimize_points(denoiser, data, t, range(1, len(t) - 1, 2), num_draws, generator, **kw)
        stages.append(t)
    return [s[::-1].copy() for s in stages], history


def gaussian_klub_optimal(t_min: float, t_max: float, num_steps: int, c: float, tol: float = 1e-13) -> np.ndarray:
    """The KLUB-optimal ascending schedule for N(0, c^2 I) data (App. A.3): every interior point solves
    d KLUB / d t_i = 0, i.e. t_i = c sqrt(t_{i-1} t_{i+1} / (sqrt((t_{i-1}^2 + c^2)(t_{i+1}^2 + c^2)) - t_{i-1} t_{i+1})),
    iterated to a fixed point from the geometric schedule."""
    t = np.exp(np.linspace(np.log(t_min), np.log(t_max), num_steps + 1))
    for _ in range(200000):
        prev = t.copy()
        for i in range(1, num_steps):
            a, b = t[i - 1], t[i + 1]
            t[i] = c * np.sqrt(a * b / (np.sqrt((a * a + c * c) * (b * b + c * c)) - a * b))
        if np.max(np.abs(np.log(t / prev))) < tol:
            break
    return t


# --------------------------------------------------------------------------- schedules (descending sigmas)
def loglinear_interp(sigmas: Sequence[float], num_steps: int) -> np.ndarray:
    """NVIDIA howto `loglinear_interp`: a descending schedule viewed as piecewise log-linear in the step
    index, resampled to num_steps + 1 levels (same first and last level)."""
    ys = np.log(np.asarray(sigmas, dtype=np.float64)[::-1])
    xs = np.linspace(0, 1, len(ys))
    return np.exp(np.interp(np.linspace(0, 1, num_steps + 1), xs, ys))[::-1].copy()


def sampling_sigmas(sigmas: Sequence[float]) -> np.ndarray:
    """The levels the sampler visits: the schedule with its last level set to 0 (NVIDIA howto / ComfyUI)."""
    out = np.array(sigmas, dtype=np.float64)
    out[-1] = 0.0
    return out


def time_uniform(num_steps: int, sigma_table: np.ndarray) -> np.ndarray:
    """Time-uniform (App. B.2, the discrete-time default): t_i = round(i (T - 1) / n), as sigmas, descending."""
    t = np.round(np.linspace(0, len(sigma_table) - 1, num_steps + 1)).astype(int)
    return sigma_table[t][::-1].copy()


def edm(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022) Eq. 5 / App. B.2: (sigma_max^(1/rho) + i/n (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho."""
    r = np.linspace(0, 1, num_steps + 1)
    return (sigma_max ** (1 / rho) + r * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def log_snr(num_steps: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """Uniform in log-SNR = -2 log sigma (Lu et al. 2022): geometric sigmas, the rho -> infinity EDM limit."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_steps + 1))


def baseline(name: str, num_steps: int, sigma_table: np.ndarray, rho: float = 7.0) -> np.ndarray:
    """A hand-crafted schedule between the model's sigma_min and sigma_max: time_uniform | edm | log_snr."""
    lo, hi = float(sigma_table[0]), float(sigma_table[-1])
    makers = {"time_uniform": lambda: time_uniform(num_steps, sigma_table), "edm": lambda: edm(num_steps, lo, hi, rho),
              "log_snr": lambda: log_snr(num_steps, lo, hi)}
    if name not in makers:
        raise ValueError(f"unknown schedule '{name}' (one of {sorted(makers)})")
    return makers[name]()


def schedule_timesteps(sigmas: Sequence[float], sigma_table: np.ndarray) -> List[int]:
    """The training timesteps of the model calls: the first n levels snapped to the table (nearest in
    log sigma), strictly decreasing; the sampler's last step lands on data (t = -1, sigma = 0)."""
    ts = [int(v) for v in sigma_to_timestep(np.asarray(sigmas[:-1], dtype=np.float64), sigma_table)]
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"schedule {np.round(sigmas, 5).tolist()} maps to non-decreasing timesteps {ts}")
    return ts
