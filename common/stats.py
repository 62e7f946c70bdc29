"""The statistics behind every interval and verdict, in one place, on scipy and statsmodels.

Replication units (training or sampling seeds) are few (3-5), so everything here is Student-t
based: intervals of a mean over units, one-sided t-tests, the t-test's power (statsmodels), and
Holm's step-down adjustment (statsmodels). docs/verdicts.md says how the verdict rule uses them.
"""

from __future__ import annotations

from functools import cache
from typing import Sequence, Tuple

import numpy as np

NAN = float("nan")


def mean_ci(values: Sequence[float], alpha: float = 0.05) -> Tuple[float, float, float]:
    """Mean and two-sided (1 - alpha) Student-t interval over independent units; (mean, lo, hi)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return NAN, NAN, NAN
    m = float(v.mean())
    if len(v) < 2:
        return m, NAN, NAN
    half = float(stats.t.ppf(1 - alpha / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def _flat(v: np.ndarray) -> bool:
    """No spread beyond float noise (a design fact measured on every unit, a metric at its ceiling)."""
    return bool(np.std(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))


def p_greater(values: Sequence[float], null: float = 0.0) -> float:
    """One-sided p-value of H0: mean <= null against mean > null (scipy's one-sample t-test).

    With zero spread the t statistic is undefined; the p-value is then 0 or 1 by the sign.
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return NAN
    if _flat(v):
        return 0.0 if v.mean() > null else 1.0
    return float(stats.ttest_1samp(v, null, alternative="greater").pvalue)


def p_two_sided(values: Sequence[float], null: float = 0.0) -> float:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return NAN
    if _flat(v):
        return 0.0 if v.mean() != null else 1.0
    return float(stats.ttest_1samp(v, null).pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values: p_(k) -> max_{j <= k} min(1, (m - j + 1) p_(j)); NaN stays NaN, outside the family.

    The same numbers as statsmodels' `multipletests(method="holm")` (tests/common/test_stats.py checks
    it), written out because that function runs `gc.collect()` on every call (~50 ms), which the
    thousands of simulated verdicts in the tests cannot afford.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def holm_levels(pvalues: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Per-test significance level of Holm's procedure: alpha / (m - rank + 1), rank by ascending p.

    The claim ranked r is tested (and its adjusted interval drawn) at this level; NaN p-values are
    outside the family and get NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")], start=1):
        out[i] = alpha / (m - rank + 1)
    return out


def min_detectable_effect(sd: float, n: int, alpha_one_sided: float, power: float = 0.8) -> float:
    """Smallest true mean a one-sided one-sample t-test detects with `power` (statsmodels' power).

    In the units of the data: Cohen's d solved from the noncentral t, times the observed unit sd.
    """
    if n < 2 or not np.isfinite(sd):
        return NAN
    return 0.0 if sd == 0 else _cohen_d(int(n), float(alpha_one_sided), float(power)) * sd


@cache
def _cohen_d(n: int, alpha_one_sided: float, power: float) -> float:
    from statsmodels.stats.power import TTestPower

    d = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha_one_sided, power=power, alternative="larger")
    return float(np.asarray(d).item())
