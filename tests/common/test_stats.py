"""common/stats.py against scipy/statsmodels references and closed forms."""

import numpy as np
import pytest
from scipy import stats as sps

from common import stats


def test_mean_ci_matches_scipy_t_interval():
    v = [3.1, 2.7, 3.6, 2.9]
    m, lo, hi = stats.mean_ci(v)
    assert m == pytest.approx(np.mean(v))
    assert (lo, hi) == pytest.approx(sps.t.interval(0.95, 3, loc=np.mean(v), scale=sps.sem(v)))
    m, lo, hi = stats.mean_ci(v, alpha=0.1)
    assert (lo, hi) == pytest.approx(sps.t.interval(0.9, 3, loc=np.mean(v), scale=sps.sem(v)))
    m1, lo1, hi1 = stats.mean_ci([4.0])
    assert m1 == 4.0 and np.isnan(lo1) and np.isnan(hi1)


def test_one_sided_p_is_consistent_with_the_interval():
    """lo of the (1 - a) two-sided interval > x0  <=>  one-sided p(mean > x0) < a / 2."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        v = rng.normal(0.5, 1.0, 4)
        x0 = rng.normal(0.0, 0.5)
        _, lo, _ = stats.mean_ci(v, 0.05)
        assert (lo > x0) == (stats.p_greater(v, x0) < 0.025)
    assert stats.p_greater([1.0, 1.0, 1.0], 0.0) == 0.0 and stats.p_greater([1.0, 1.0], 2.0) == 1.0


def test_holm_and_its_levels():
    p = [0.01, 0.04, np.nan, 0.03]
    adj = stats.holm(p)
    # by hand: sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert adj[0] == pytest.approx(0.03) and adj[3] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06)
    assert np.isnan(adj[2])
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 12):
        q = rng.uniform(0, 0.2, m) ** 2
        assert stats.holm(q) == pytest.approx(multipletests(q, method="holm")[1])
    lv = stats.holm_levels(p, 0.05)
    assert lv[0] == pytest.approx(0.05 / 3) and lv[3] == pytest.approx(0.05 / 2) and lv[1] == pytest.approx(0.05)


def test_min_detectable_effect_has_the_stated_power():
    """The noncentral t at the MDE gives 80% power (closed form through scipy's nct)."""
    n, alpha, sd = 5, 0.025, 2.0
    mde = stats.min_detectable_effect(sd, n, alpha)
    crit = sps.t.ppf(1 - alpha, n - 1)
    power = 1 - sps.nct.cdf(crit, n - 1, mde / sd * np.sqrt(n))
    assert power == pytest.approx(0.8, abs=1e-6)
    assert stats.min_detectable_effect(2 * sd, n, alpha) == pytest.approx(2 * mde)
    assert np.isnan(stats.min_detectable_effect(1.0, 1, alpha))
