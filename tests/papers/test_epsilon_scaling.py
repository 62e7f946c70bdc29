"""Epsilon Scaling (Ning et al., ICLR 2024): the lambda schedules, the hook, and a closed-form Gaussian toy.

Gaussian toy (derived here; the paper has no such check): data N(0, s^2) with s = 0.5, the exact epsilon
model eps*(x_t, t) = sqrt(1 - ab_t) x_t / (ab_t s^2 + 1 - ab_t), linear betas 1e-4..0.02 (T = 1000),
DDIM eta = 0 with ADM respacing of N steps (`linspace`), no x0 clipping, eps / lambda at every step.
The sampler is then linear in x_T, x_0 = c x_T with x_T ~ N(0, 1), so the final std is |c|.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.optimize import brentq

from common.claims import load_claims
from common.config import load_config
from common.diffusion import NoiseSchedule
from common.sampling import Hooks, sample, timesteps
from papers.epsilon_scaling.config import EpsilonScalingConfig
from papers.epsilon_scaling.method import EpsilonScaling, epsilon_scale, linear_k_for_mean

REPO = Path(__file__).resolve().parents[2]
S = 0.5  # data std
SCHEDULE = NoiseSchedule()


# --------------------------------------------------------------------------- lambda schedules
def test_uniform_schedule():
    assert [epsilon_scale(i, 20, 1.017) for i in range(20)] == [1.017] * 20


def test_linear_schedule():
    # lambda = k t' + b with t' = N - 1 - i (t' = 0 on the last step)
    assert epsilon_scale(0, 20, 1.0, 0.0025) == pytest.approx(1.0 + 19 * 0.0025)  # first step: 1.0475
    assert epsilon_scale(19, 20, 1.0, 0.0025) == pytest.approx(1.0)
    assert epsilon_scale(10, 20, 1.0, 0.0025) == pytest.approx(1.0 + 9 * 0.0025)


@pytest.mark.parametrize("b_mean, b0, n", [(1.017, 1.0, 20), (1.011, 1.0, 10), (1.02, 1.005, 50)])
def test_linear_k_keeps_the_mean(b_mean, b0, n):
    k = linear_k_for_mean(b_mean, b0, n)
    lams = [epsilon_scale(i, n, b0, k) for i in range(n)]
    assert np.mean(lams) == pytest.approx(b_mean, abs=1e-12)
    assert lams[-1] == pytest.approx(b0) and lams[0] > lams[-1]


@pytest.mark.parametrize("b_uniform, k, b0", [
    (1.011, 0.0008, 1.0034),  # LSUN tower 64
    (1.008, 0.0004, 1.0042),  # FFHQ 128
    (1.006, 0.0002, 1.0041),  # ImageNet 64
    (1.005, 0.00022, 1.00291),  # ImageNet 128
])
def test_linear_k_reproduces_published_kt_b_rows(b_uniform, k, b0):
    """ADM-ES Table (T' = 20): the kt+b rows keep the uniform b as the mean, b0 + 9.5 k = b."""
    assert linear_k_for_mean(b_uniform, b0, 20) == pytest.approx(k, abs=2e-6)


def test_hook_divides_eps():
    eps = torch.full((2, 1, 2, 2), 3.0)
    h = EpsilonScaling(10, 1.5)
    assert isinstance(h, Hooks)
    torch.testing.assert_close(h.model_output(eps, None, 0, 999), eps / 1.5)
    lin = EpsilonScaling(10, 1.0, k=0.01)
    torch.testing.assert_close(lin.model_output(eps, None, 0, 999), eps / 1.09)
    torch.testing.assert_close(lin.model_output(eps, None, 9, 0), eps)
    first = EpsilonScaling(10, 1.5, scale_first_step=False)
    torch.testing.assert_close(first.model_output(eps, None, 0, 999), eps)
    torch.testing.assert_close(first.model_output(eps, None, 1, 888), eps / 1.5)


# --------------------------------------------------------------------------- the Gaussian toy
def exact_eps(x, t, c):
    ab = SCHEDULE.alpha_bar(t).reshape(-1, *([1] * (x.dim() - 1)))
    return ((1 - ab).sqrt() * x / (ab * S**2 + 1 - ab)).to(x.dtype)


def final_std(n: int, lam: float) -> float:
    """|c| of x_0 = c x_T through common.sampling.sample with the EpsilonScaling hook."""
    x_T = torch.ones(1, 1, dtype=torch.float64)
    out = sample(exact_eps, SCHEDULE, lambda: x_T.clone(), None, timesteps(n, 1000, "linspace"),
                 method="ddim", eta=0.0, clip_x0=False, hooks=EpsilonScaling(n, lam))
    return abs(float(out))


def final_std_scalar(n: int, lam: float) -> float:
    """The same recursion in plain float64 scalars, independent of common.sampling."""
    ab = SCHEDULE.alphas_cumprod.numpy()
    ts = np.round(np.linspace(0, 999, n))[::-1].astype(int)
    c = 1.0
    for i, t in enumerate(ts):
        a = ab[t]
        a_prev = ab[ts[i + 1]] if i + 1 < n else 1.0
        e = np.sqrt(1 - a) * c / (a * S**2 + 1 - a) / lam
        x0 = (c - np.sqrt(1 - a) * e) / np.sqrt(a)
        c = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * e
    return abs(c)


def test_exact_model_is_the_data_score():
    """Sanity check of the toy: with the exact model, x0-hat is E[x0 | x_t] = sqrt(ab) s^2 x_t / (ab s^2 + 1 - ab)."""
    x = torch.tensor([[0.7], [-1.3]], dtype=torch.float64)
    for t in (0, 300, 999):
        ab = float(SCHEDULE.alpha_bar(t))
        x0 = SCHEDULE.predict_x0(x, exact_eps(x, torch.tensor([t, t]), None), t)
        torch.testing.assert_close(x0, np.sqrt(ab) * S**2 * x / (ab * S**2 + 1 - ab))


@pytest.mark.parametrize("n, published", [(10, 0.3616), (20, 0.4305), (50, 0.4719), (100, 0.4858)])
def test_gaussian_toy_final_std_without_scaling(n, published):
    got = final_std(n, 1.0)
    assert got == pytest.approx(final_std_scalar(n, 1.0), abs=1e-12)
    assert got == pytest.approx(published, abs=1e-4)  # derived here, to 4 decimals


def test_gaussian_toy_final_std_with_scaling():
    assert final_std(20, 1.017) == pytest.approx(0.484295, abs=2e-6)  # derived here, to 6 decimals
    assert final_std_scalar(20, 1.017) == pytest.approx(0.484295, abs=2e-6)
    # scaling eps down removes less noise, so the too-small std grows towards the data std 0.5
    assert final_std(20, 1.0) < final_std(20, 1.017) < S


@pytest.mark.parametrize("n, published", [(10, 1.0379), (20, 1.0217), (50, 1.0094), (100, 1.0048)])
def test_gaussian_toy_lambda_star(n, published):
    lam = brentq(lambda v: final_std_scalar(n, v) - S, 1.0, 1.1, xtol=1e-10)
    assert lam == pytest.approx(published, abs=1e-4)
    assert final_std(n, lam) == pytest.approx(S, abs=1e-8)  # the sampler agrees at the root


def test_scaling_every_step_vs_skipping_the_first():
    """The hook's `scale_first_step` switch changes the sample (and only through step 0)."""
    n = 20
    x_T = torch.ones(1, 1, dtype=torch.float64)
    kw = dict(method="ddim", eta=0.0, clip_x0=False)
    steps = timesteps(n, 1000, "linspace")
    all_ = sample(exact_eps, SCHEDULE, lambda: x_T.clone(), None, steps, hooks=EpsilonScaling(n, 1.017), **kw)
    skip = sample(exact_eps, SCHEDULE, lambda: x_T.clone(), None, steps,
                  hooks=EpsilonScaling(n, 1.017, scale_first_step=False), **kw)
    assert abs(float(all_) - float(skip)) > 1e-4


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(EpsilonScalingConfig, paper="epsilon_scaling", overrides=[f"profile={profile}"], root=REPO)
    assert cfg.profile == profile
    assert cfg.sampler.spacing == "linspace"
    assert set(cfg.compare.seeds).isdisjoint(cfg.sweep.seeds)  # b* is chosen on other seeds
    assert 1.0 in cfg.sweep.b  # the baseline is on the sweep's grid
    # the paper's own overlay for this profile is applied on top of its base values
    raw = yaml.safe_load((REPO / "papers" / "epsilon_scaling" / "params.yaml").read_text())
    for section, values in ((raw.get("profiles") or {}).get(profile) or {}).items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"
    if profile == "full":
        assert cfg.compare.b == 1.017  # the paper's b for ADM on CIFAR-10


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "epsilon_scaling" / "claims.yaml")
    assert claims and all(c["test"]["metric"] for c in claims)
