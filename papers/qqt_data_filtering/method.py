"""Scaling laws for data filtering -- Goyal, Maini, Lipton, Raghunathan, Kolter, "Scaling Laws for Data
Filtering -- Data Curation cannot be Compute Agnostic", CVPR 2024 (arXiv:2404.07177; official code
locuslab/scaling_laws_data_filtering @ba37663, functions in `objective.py`, `grid_search.py`,
`estimate_best_pool.py`; restated here, not copied).

1. One pool, no repetition (Sec. 3). Error after n samples of a pool of utility b < 0:
       y(n) = a * n^b + d,          dy/dn = b * y / n                                   (Eq. 1)
   b is the pool's "utility": the more negative, the faster the error falls.

2. Repetition (Sec. 3.1). On pass k over a pool of size S (k = 0 first) the utility decays with a
   half-life of tau passes:
       b_k = b * 0.5^(k / tau)                                                           (Eq. 3)
   and the passes chain multiplicatively, n_k = min((k + 1) S, n):
       y_k = y_{k-1} * (n_k / n_{k-1})^{b_k}                                              (Eq. 4)
   Official `func_effective_utility` (kept for parity, quirks included): n is scaled as a*n/normalizer
   (normalizer = 1e5) inside the power, the first pass gives (a*min(S, n)/normalizer)^{b_0} + d, and the
   product over later passes multiplies that sum, d included.

3. Several pools (Sec. 3.2). A mix of p pools of size S each is one pool of size p*S whose utility on
   pass k is the mean of the members' decayed utilities:
       b_k(mix) = mean_i  b_i * 0.5^(k / tau_i)                                          (Eq. 5)
   Official `estimate_best_buckets` passes tau_i * p (not tau_i) together with the pool size p*S;
   the x p looks like double counting (passes are already over the combined pool), so it is a flag
   (`tau_times_p`), on by default as in the official code.

4. Fitting (official `grid_search.py`). Per pool: squared error of Eq. 4 against the observed errors,
   minimised on a grid b in linspace(-0.005, -0.5, 100) x tau in linspace(1, 10, 100), with a and d
   fixed (shared by all pools; `ablations/finding_a.py` picks the pair (a, d) with the least mean
   loss over pools from short lists). The official grid is shuffled with an unseeded
   `np.random.shuffle` and cut at 100k points (relevant when a is searched too; with ties, the first
   point in the shuffled order wins), so fits are not reproducible; here the order is a permutation
   drawn from `shuffle_seed`, and the first minimum in that order wins (same rule as the official
   strict `<` loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

NORMALIZER = 100_000  # official default: n enters as a * n / 1e5
BASE = 0.5  # half-life base of Eq. 3


# --------------------------------------------------------------------------- Eq. 3-4, one pool
def _passes(n: float, S: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass indices k = 0..floor(n/S), cumulative samples n_k = min((k+1)S, n) and n_{k-1} = kS."""
    k = np.arange(int(n // S) + 1)
    return k, np.minimum(S * (k + 1), n).astype(np.float64), (S * k).astype(np.float64)


def _chain(n: float, a: float, b_k: np.ndarray, d: float, S: float, normalizer: float) -> float:
    """Eq. 4 with the official scaling and quirk: ((a n_0/N)^{b_0} + d) * prod_{k>=1} (n_k/n_{k-1})^{b_k}."""
    k, hi, lo = _passes(n, S)
    hi, lo = a * hi / normalizer, a * lo / normalizer
    first = 0.0 if hi[0] == 0 else float(hi[0] ** b_k[0])  # official power(0, .) = 0
    loss = first + d
    if len(k) > 1:
        loss *= float(np.prod((hi[1:] / lo[1:]) ** b_k[1:]))
    return loss


def effective_utility(n: float, a: float, b: float, tau: float, d: float, S: float,
                      normalizer: float = NORMALIZER) -> float:
    """Error after n samples of one pool of size S (Eq. 3-4; official `func_effective_utility`)."""
    k, _, _ = _passes(n, S)
    return _chain(n, a, b * BASE ** (k / tau), d, S, normalizer)


def effective_utility_mix(n: float, a: float, bs: Sequence[float], taus: Sequence[float], d: float,
                          S_total: float, normalizer: float = NORMALIZER) -> float:
    """Error after n samples of a mix of pools, S_total samples per pass over the mix (Eq. 5; official
    `func_effective_utility_aggregation`; all pools share `a`)."""
    if len(bs) != len(taus) or not len(bs):
        raise ValueError(f"need one tau per b (got {len(bs)} b, {len(taus)} tau)")
    k, _, _ = _passes(n, S_total)
    b_k = np.mean([b * BASE ** (k / t) for b, t in zip(bs, taus)], axis=0)
    return _chain(n, a, b_k, d, S_total, normalizer)


def mix_errors(n: float, a: float, bs: Sequence[float], taus: Sequence[float], d: float, S: float,
               tau_times_p: bool = True, sort_by_utility: bool = False,
               normalizer: float = NORMALIZER) -> List[float]:
    """Predicted error of the top-p mixes, p = 1..len(bs), at n samples (official `estimate_best_buckets`).

    Pools are taken in the given order (bucket 1 first), or, with `sort_by_utility`, most negative b
    first as the official code does. The mix of p pools has size p*S and, if `tau_times_p`, tau_i * p.
    """
    bs, taus = np.asarray(bs, dtype=np.float64), np.asarray(taus, dtype=np.float64)
    if sort_by_utility:
        order = np.argsort(bs, kind="stable")
        bs, taus = bs[order], taus[order]
    out = []
    for p in range(1, len(bs) + 1):
        t = taus[:p] * (p if tau_times_p else 1)
        out.append(effective_utility_mix(n, a, bs[:p], t, d, p * S, normalizer))
    return out


def best_pool_count(errors: Sequence[float]) -> int:
    """p with the least error (1-based; the first one on ties, like np.argmin)."""
    return int(np.argmin(np.asarray(errors, dtype=np.float64))) + 1


# --------------------------------------------------------------------------- fitting (grid search)
def utility_curve_grid(ns: Sequence[float], a: float, b: np.ndarray, tau: np.ndarray, d: float, S: float,
                       normalizer: float = NORMALIZER) -> np.ndarray:
    """Eq. 3-4 for many (b, tau) at once: [len(b), len(ns)] for paired arrays b, tau (vectorised
    `effective_utility`, equal to it point by point)."""
    b, tau = np.asarray(b, dtype=np.float64)[:, None], np.asarray(tau, dtype=np.float64)[:, None]
    out = np.empty((b.shape[0], len(ns)))
    for j, n in enumerate(ns):
        k, hi, lo = _passes(n, S)
        hi, lo = a * hi / normalizer, a * lo / normalizer
        b_k = b * BASE ** (k[None, :] / tau)  # [G, K]
        first = np.zeros(len(b)) if hi[0] == 0 else hi[0] ** b_k[:, 0]
        y = first + d
        if len(k) > 1:
            y = y * np.prod((hi[1:] / lo[1:])[None, :] ** b_k[:, 1:], axis=1)
        out[:, j] = y
    return out


@dataclass
class Fit:
    a: float
    b: float
    tau: float
    d: float
    loss: float  # sum of squared errors over the observations


def default_grid(b_range=(-0.005, -0.5), tau_range=(1.0, 10.0), num: int = 100) -> Tuple[np.ndarray, np.ndarray]:
    """The official grids: b in linspace(-0.005, -0.5, 100), tau in linspace(1, 10, 100)."""
    return np.linspace(*b_range, num), np.linspace(*tau_range, num)


def grid_search(ns: Sequence[float], errors: Sequence[float], S: float, a: float, d: float,
                b_grid: np.ndarray, tau_grid: np.ndarray, shuffle_seed: int = 0, max_points: int = 100_000,
                normalizer: float = NORMALIZER) -> Fit:
    """Least squares of Eq. 4 over the (b, tau) grid with a, d fixed (official `grid_search`, seeded).

    The grid (b-major order) is permuted with `np.random.default_rng(shuffle_seed)` and cut at
    `max_points`; the first point of least loss in that order wins. Non-finite losses never win.
    """
    B, T = np.meshgrid(np.asarray(b_grid, dtype=np.float64), np.asarray(tau_grid, dtype=np.float64), indexing="ij")
    B, T = B.ravel(), T.ravel()
    order = np.random.default_rng(shuffle_seed).permutation(len(B))[:max_points]
    B, T = B[order], T[order]
    pred = utility_curve_grid(ns, a, B, T, d, S, normalizer)
    with np.errstate(invalid="ignore", over="ignore"):
        loss = ((pred - np.asarray(errors, dtype=np.float64)[None, :]) ** 2).sum(1)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    i = int(np.argmin(loss))
    if not np.isfinite(loss[i]):
        raise ValueError("grid search: every grid point gives a non-finite loss")
    return Fit(float(a), float(B[i]), float(T[i]), float(d), float(loss[i]))


def fit_pools(observations: Dict[str, Tuple[Sequence[float], Sequence[float]]], S: float, a_values: Sequence[float],
              d_values: Sequence[float], b_grid: np.ndarray, tau_grid: np.ndarray, shuffle_seed: int = 0,
              max_points: int = 100_000, normalizer: float = NORMALIZER) -> Tuple[Dict[str, Fit], dict]:
    """Fit every pool with a shared (a, d): for each pair from `a_values` x `d_values` fit (b, tau) per
    pool, keep the pair with the least mean loss over pools (official `ablations/finding_a.py`).

    observations: {pool: (samples seen, errors)}. Returns ({pool: Fit}, {"a", "d", "mean_loss", "table"}).
    """
    best, table = None, []
    for d in d_values:
        for a in a_values:
            fits = {k: grid_search(ns, errs, S, a, d, b_grid, tau_grid, shuffle_seed, max_points, normalizer)
                    for k, (ns, errs) in observations.items()}
            mean_loss = float(np.mean([f.loss for f in fits.values()]))
            table.append({"a": float(a), "d": float(d), "mean_loss": mean_loss})
            if best is None or mean_loss < best[0]:
                best = (mean_loss, a, d, fits)
    mean_loss, a, d, fits = best
    return fits, {"a": float(a), "d": float(d), "mean_loss": mean_loss, "table": table}


# --------------------------------------------------------------------------- quality buckets (Sec. 4 setup)
def score_buckets(scores: np.ndarray, n_buckets: int, size: int) -> List[np.ndarray]:
    """The top n_buckets * size items by score, cut into consecutive buckets of `size` (bucket 1 best).

    Descending score, ties broken by the lower index (a fixed, data-independent rule), like the
    T-MARS top 0-10 / 10-20 / 20-30 / 30-40% buckets of DataComp medium.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if n_buckets * size > len(scores):
        raise ValueError(f"{n_buckets} buckets of {size} need {n_buckets * size} items; the pool has {len(scores)}")
    order = np.lexsort((np.arange(len(scores)), -scores))
    return [np.sort(order[i * size:(i + 1) * size]) for i in range(n_buckets)]
