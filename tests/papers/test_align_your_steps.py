"""Align Your Steps (Sabour et al., ICML 2024): published schedules, the DDPM <-> EDM mapping, the KLUB
estimator and optimiser on Gaussian data (closed forms of Lemma 3.3 / App. A.3), and the paper's files.

References: NVIDIA's published 11-level sigma lists (AYS howto, as in ComfyUI's AlignYourStepsScheduler)
and their timestep form (howto; diffusers `AysSchedules`); reference values of the howto's log-linear
interpolation (`loglinear_interp`) derived here by applying it to the published SD1.5 and SVD lists.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy.integrate import quad
from scipy.optimize import minimize, minimize_scalar

from common.claims import load_claims
from common.config import load_config
from common.diffusion import NoiseSchedule
from common.samplers import DDIM, Euler
from common.sampling import SamplingSpec, generate_all, sample
from papers.align_your_steps import method as ays
from papers.align_your_steps.config import AlignYourStepsConfig

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = NoiseSchedule()  # the base model's: linear betas 1e-4..0.02, T = 1000
TABLE = ays.ddpm_sigmas(SCHEDULE.alphas_cumprod)

# NVIDIA's optimised 10-step schedules (11 levels, descending)
SD15 = [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
        0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582]
SDXL = [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
        0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582]
SVD = [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002]
SD15_T = [999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0]
SDXL_T = [999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0]


# --------------------------------------------------------------------------- published schedules
@pytest.mark.parametrize("sigmas, steps", [(SD15, SD15_T), (SDXL, SDXL_T)])
def test_sigma_mapping_reproduces_the_published_sd_schedules(sigmas, steps):
    """sigma_t = sqrt((1 - ab_t) / ab_t) with SD's scaled-linear betas (0.00085 -> 0.012, 1000 steps) gives
    NVIDIA's sigmas at the published timesteps (to 1e-8 in float64; diffusers' float32 cumprod to 2e-5),
    and the nearest-timestep map sends the sigmas back to those timesteps."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    sd64 = ays.ddpm_sigmas(np.cumprod(1 - betas))
    np.testing.assert_allclose(sd64[steps], sigmas, rtol=1e-8)
    assert sd64[0] == pytest.approx(SD15[-1], rel=1e-8) and sd64[-1] == pytest.approx(SD15[0], rel=1e-8)
    sd = ays.ddpm_sigmas(NoiseSchedule(1000, "scaled_linear", 0.00085, 0.012).alphas_cumprod)
    np.testing.assert_allclose(sd[steps], sigmas, rtol=2e-5)
    assert ays.sigma_to_timestep(sigmas, sd).tolist() == steps
    # the published list is also a valid sampling schedule: model calls at the first 10, then data
    assert ays.schedule_timesteps(sigmas, sd) == steps[:-1]


@pytest.mark.parametrize("sigmas, n, expected", [
    (SD15, 5, [14.6146, 3.8637, 1.8842, 0.9643, 0.3977, 0]),
    (SD15, 20, [14.6146, 9.7275, 6.4746, 5.0016, 3.8637, 3.2266, 2.6946, 2.2533, 1.8842, 1.6209, 1.3944, 1.1595,
                0.9643, 0.7931, 0.6524, 0.5094, 0.3977, 0.2455, 0.1515, 0.0665, 0]),
])
def test_loglinear_interpolation_reference_values(sigmas, n, expected):
    got = ays.sampling_sigmas(ays.loglinear_interp(sigmas, n))
    np.testing.assert_allclose(got, expected, atol=5e-5)


def test_loglinear_interpolation_svd_first_values_and_identity():
    got = ays.loglinear_interp(SVD, 25)
    np.testing.assert_allclose(got[:6], [700, 252.1259, 90.8107, 42.5912, 26.0116, 15.886], atol=5e-5)
    np.testing.assert_allclose(ays.loglinear_interp(SD15, 10), SD15, rtol=1e-12)  # 10 steps: the list itself
    assert ays.sampling_sigmas(SD15)[-1] == 0 and ays.sampling_sigmas(SD15)[-2] == SD15[-2]


def test_subdivision_is_the_log_midpoint_rule():
    """Sec. 3.3: t'_{2i} = t_i, log t'_{2i+1} = mean of the logs = the howto's interpolation to 2n steps."""
    t = np.asarray(SD15)[::-1]
    np.testing.assert_allclose(ays.subdivide(t)[::-1], ays.loglinear_interp(SD15, 20), rtol=1e-12)
    snapped = ays.subdivide(TABLE[[0, 5, 40, 300, 999]], grid=TABLE)
    assert np.isin(snapped, TABLE).all() and np.all(np.diff(snapped) > 0)
    with pytest.raises(ValueError, match="no grid level"):
        ays.subdivide(TABLE[[0, 1, 10]], grid=TABLE)


# --------------------------------------------------------------------------- DDPM in EDM form
def _model(x, t, c):
    """A stand-in eps-network that depends on x, the (fractional) time and the class."""
    return 0.4 * x + 1e-3 * t.float().reshape(-1, 1, 1, 1) + (0.0 if c is None else 0.05 * c.float().reshape(-1, 1, 1, 1))


def euler_in_sigma(x, d, sigma, sigma_next):
    """Euler on dx/dsigma = (x - D) / sigma in EDM form (Karras et al. 2022, Algorithm 1), written here."""
    return x + (sigma_next - sigma) * (x - d) / sigma


@pytest.mark.parametrize("t, t_prev", [(999, 899), (500, 312), (40, 3), (17, -1)])
def test_ddim_and_euler_steps_are_euler_in_sigma_on_the_denoiser(t, t_prev):
    """DDIM (eta = 0) and the Euler rule of common/samplers.py, divided by sqrt(ab'), equal Euler in sigma on
    D = x - sigma eps, where x = x_t / sqrt(ab) is the VE-form sample and D is the `Denoiser` at sigma_t."""
    g = torch.Generator().manual_seed(t)
    x_t = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    c = torch.tensor([0, 3, 7])
    tt = torch.full((3,), t)
    eps = _model(x_t, tt, c)
    x0 = SCHEDULE.predict_x0(x_t, eps, t)
    ab, ab_prev = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_prev))
    sigma, sigma_prev = TABLE[t], (TABLE[t_prev] if t_prev >= 0 else 0.0)
    x_ve = x_t / np.sqrt(ab)
    d = ays.Denoiser(_model, SCHEDULE.alphas_cumprod)(x_ve, torch.tensor(sigma), c)
    torch.testing.assert_close(d, x0, rtol=1e-9, atol=1e-9)  # D is the DDPM's x0 prediction
    for rule in (DDIM(0.0), Euler()):
        out = rule.step(SCHEDULE, x_t, eps, x0, t, t_prev, None)
        torch.testing.assert_close(out / np.sqrt(ab_prev), euler_in_sigma(x_ve, d, sigma, sigma_prev),
                                   rtol=1e-9, atol=1e-9)


def test_explicit_timesteps_drive_the_shared_sampler_like_an_euler_loop():
    """A whole run of the shared sampler on a schedule's timesteps = Euler in sigma on the Denoiser, and the
    network only sees the schedule's timesteps; `SamplingSpec.timesteps` is what evaluate.py passes."""
    sigmas = ays.edm(6, TABLE[0], TABLE[-1])
    ts = ays.schedule_timesteps(sigmas, TABLE)
    seen = []

    def model(x, t, c):
        seen.append(int(t[0]))
        return _model(x, t, c)

    c = torch.tensor([1, 2])
    noise = lambda: torch.ones(2, 1, 2, 2, dtype=torch.float64) * torch.tensor([0.5, -1.0]).view(2, 1, 1, 1)  # noqa: E731
    out = sample(model, SCHEDULE, noise, c, ts, "ddim", 0.0, False)
    assert seen == ts
    den = ays.Denoiser(_model, SCHEDULE.alphas_cumprod)
    levels = [TABLE[t] for t in ts] + [0.0]
    x = noise() / np.sqrt(float(SCHEDULE.alpha_bar(ts[0])))
    for s, s_next in zip(levels[:-1], levels[1:]):
        x = euler_in_sigma(x, den(x, torch.tensor(s), c), s, s_next)
    torch.testing.assert_close(out, x, rtol=1e-9, atol=1e-9)
    # through SamplingSpec.timesteps: the network sees exactly those timesteps
    seen.clear()
    spec = SamplingSpec(2, len(ts), "ddim", guidance_scale=1.0, seed=0, clip_x0=False, timesteps=ts)
    generate_all(lambda x, t, c: model(x.double(), t, c).float(), SCHEDULE, spec, (1, 2, 2), 3)
    assert seen == ts
    with pytest.raises(ValueError, match="timesteps"):
        SamplingSpec(2, len(ts) + 1, "ddim", timesteps=ts)


def test_fractional_timesteps_interpolate_log_sigma():
    assert ays.sigma_to_timestep(TABLE[[0, 17, 999]], TABLE, integer=False) == pytest.approx([0, 17, 999], abs=1e-9)
    mid = np.sqrt(TABLE[300] * TABLE[301])
    assert ays.sigma_to_timestep(mid, TABLE, integer=False) == pytest.approx(300.5, abs=1e-9)
    assert ays.sigma_to_timestep([TABLE[300] * 1.0001, mid * 1.0001], TABLE).tolist() == [300, 301]


# --------------------------------------------------------------------------- baselines
def test_baseline_schedules():
    lo, hi = TABLE[0], TABLE[-1]
    assert ays.schedule_timesteps(ays.time_uniform(10, TABLE), TABLE) == [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]
    e = ays.edm(10, lo, hi, 7.0)
    assert e[0] == pytest.approx(hi) and e[-1] == pytest.approx(lo)
    np.testing.assert_allclose(e ** (1 / 7), np.linspace(hi ** (1 / 7), lo ** (1 / 7), 11))  # EDM Eq. 5
    np.testing.assert_allclose(ays.edm(4, 0.5, 2.5, 1.0), [2.5, 2.0, 1.5, 1.0, 0.5])  # rho = 1: linear
    r = ays.log_snr(10, lo, hi)
    np.testing.assert_allclose(r[1:] / r[:-1], (lo / hi) ** 0.1)  # uniform in log-SNR = geometric sigmas
    for name in ("time_uniform", "edm", "log_snr"):
        for n in (5, 10, 20):
            assert len(ays.schedule_timesteps(ays.baseline(name, n, TABLE), TABLE)) == n  # no collisions
    with pytest.raises(ValueError, match="unknown schedule"):
        ays.baseline("cosine", 10, TABLE)
    with pytest.raises(ValueError, match="non-decreasing"):
        ays.schedule_timesteps([TABLE[10], TABLE[10] * 0.999, TABLE[0]], TABLE)


# --------------------------------------------------------------------------- KLUB for Gaussian data
def _gaussian_denoiser(c):
    """The ideal denoiser for N(0, c^2 I) data: D(x, sigma) = c^2 / (sigma^2 + c^2) x."""
    def d(x, sigma, labels=None):
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, *([1] * (x.dim() - 1)))
        return (c**2 / (s**2 + c**2)).to(x.dtype) * x
    return d


@pytest.mark.parametrize("c", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("a, b", [(0.1, 0.2), (0.2, 0.5), (0.002, 0.05), (20.0, 80.0)])
def test_gaussian_interval_klub_matches_quadrature(a, b, c):
    integrand = lambda t: t**-3 * (1 / (t * t + c * c) - 1 / (b * b + c * c))  # noqa: E731  (Eq. 14)
    assert ays.gaussian_interval_klub(a, b, c) == pytest.approx(quad(integrand, a, b, epsrel=1e-12, epsabs=0)[0], rel=1e-8)


def test_importance_sampler_inverts_the_cdf():
    t = np.array([0.1, 0.2, 0.5, 3.0])
    u = np.array([0.0, 0.1, 0.37, 0.5, 0.9, 0.999])
    draws, upper, z = ays.sample_importance(t, u, 0.5)
    assert z == pytest.approx(ays.gaussian_klub(t, 0.5))
    for d, up, q in zip(draws, upper, u):
        j = np.searchsorted(t, d)  # the interval (t[j-1], t[j]] holds the draw; its upper end is t[j]
        assert up == t[max(j, 1)]
        mass = sum(ays.gaussian_interval_klub(t[k], t[k + 1], 0.5) for k in range(max(j, 1) - 1))
        mass += ays.gaussian_partial_klub(t[max(j, 1) - 1], d, up, 0.5)
        assert mass == pytest.approx(q * z, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("c", [0.2, 1.0])
@pytest.mark.parametrize("t", [[0.1, 0.2, 0.5], [0.01, 0.3, 2.0], [0.002, 0.1, 1.0, 10.0, 80.0]])
def test_klub_monte_carlo_is_unbiased_on_gaussian_data(t, c):
    """Algorithm 2 with the exact denoiser vs Lemma 3.3's closed form, c^4 d KLUB_gauss (data std c differs
    from the importance sampler's 0.5, so the weights are not constant)."""
    d = 32
    g = torch.Generator().manual_seed(1)
    batch = ays.KLUBBatch(c * torch.randn(512, d, generator=g, dtype=torch.float64), None, g)
    est, se = ays.estimate_klub(_gaussian_denoiser(c), batch, [np.array(t)])
    exact = c**4 * d * ays.gaussian_klub(t, c)
    assert abs(est[0] - exact) < 4 * se[0] and se[0] < 0.05 * exact


@pytest.mark.parametrize("c", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("a, b", [(0.1, 0.5), (0.01, 2.0), (1.0, 80.0)])
def test_klub_optimal_point_is_the_published_closed_form(a, b, c):
    """App. A.3: for Gaussian data the KLUB-optimal t_i given its neighbours is
    c sqrt(t_{i-1} t_{i+1} / (sqrt((t_{i-1}^2 + c^2)(t_{i+1}^2 + c^2)) - t_{i-1} t_{i+1}))."""
    best = minimize_scalar(lambda x: ays.gaussian_klub([a, x, b], c), bounds=(a, b), method="bounded",
                           options={"xatol": 1e-12}).x
    assert best == pytest.approx(ays.gaussian_klub_optimal(a, b, 2, c)[1], rel=1e-6)


def test_klub_optimal_schedule_is_not_the_kl_optimal_one():
    """App. A.3 ("early stopping is a necessity"): for Gaussian data the forward-Euler KL-optimal schedule
    (Thm. 3.1: arctan(t_i / c) linear in i) and the KLUB-optimal one differ; each wins its own objective."""
    c, lo, hi, n = 0.5, 0.002, 80.0, 6
    klub_opt = ays.gaussian_klub_optimal(lo, hi, n, c)
    direct = minimize(lambda v: ays.gaussian_klub(np.exp(np.r_[np.log(lo), np.sort(v), np.log(hi)]), c),
                      np.log(ays.log_snr(n, lo, hi)[::-1][1:-1]), method="Nelder-Mead",
                      options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000})
    np.testing.assert_allclose(klub_opt[1:-1], np.exp(np.sort(direct.x)), rtol=1e-3)
    kl_opt = c * np.tan(np.linspace(np.arctan(lo / c), np.arctan(hi / c), n + 1))

    def euler_kl(t):  # KL(N(0, t_0^2 + c^2) || output of n Euler steps), App. A.1 Eq. 19 per dimension
        f = (t[0] ** 2 + c**2) * (t[-1] ** 2 + c**2) * np.prod((t[1:-1] ** 2 + c**2) ** 2)
        f /= np.prod((t[:-1] * t[1:] + c**2) ** 2)
        return 0.5 * (-np.log(f) + f - 1)

    assert ays.gaussian_klub(klub_opt, c) < ays.gaussian_klub(kl_opt, c)
    assert euler_kl(kl_opt) < euler_kl(klub_opt)
    assert np.max(np.abs(np.log(klub_opt[1:-1] / kl_opt[1:-1]))) > 0.5


# --------------------------------------------------------------------------- the optimiser on Gaussian data
def test_candidates_snap_to_the_grid_and_stay_inside():
    t = TABLE[[0, 100, 400, 999]]
    cand = ays.candidates(t, 2, 11, 0.8, TABLE)
    assert TABLE[400] in cand and np.isin(cand, TABLE).all()
    assert cand.min() > t[1] and cand.max() < t[3] and len(cand) == 11
    tight = ays.candidates(TABLE[[0, 3, 5]], 1, 11, 0.8, TABLE)  # one free level each side: only t = 2 or 3
    assert set(tight) <= {TABLE[2], TABLE[3]} and TABLE[3] in tight
    cont = ays.candidates(np.array([0.1, 0.2, 0.5]), 1, 11, 1.0)
    assert len(cont) == 10 and cont.min() > 0.1 and cont.max() < 0.5  # reach 1: the neighbours themselves drop out


def _optimise(c, sweeps=3, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = (c * torch.randn(512, 16, generator=g, dtype=torch.float64), None)
    init = ays.log_snr(n, 0.002, 80.0)
    stages, history = ays.align_your_steps(_gaussian_denoiser(c), data, init, sweeps, 64, g)
    return init[::-1], stages[0][::-1], history


@pytest.mark.parametrize("c", [0.2, 1.0])
def test_optimiser_moves_the_steps_towards_the_klub_optimum(c):
    init, got, history = _optimise(c)
    opt = ays.gaussian_klub_optimal(0.002, 80.0, 8, c)
    closed = [ays.gaussian_klub(np.asarray(h["sigmas"])[::-1], c) for h in history]
    assert all(b <= a * 1.02 for a, b in zip(closed, closed[1:]))  # the true KLUB goes down pass by pass
    assert closed[-1] < 0.7 * closed[0]
    dist = lambda t: np.abs(np.log(t[1:-1] / opt[1:-1]))  # noqa: E731
    assert dist(got).mean() < 0.75 * dist(init).mean()
    moved = got[1:-1] != init[1:-1]
    right_way = np.sign(got[1:-1] - init[1:-1]) == np.sign(opt[1:-1] - init[1:-1])
    assert moved.sum() >= 5 and right_way[moved].all()


def test_narrower_data_pulls_the_steps_to_lower_noise():
    """Sec. 3.1: the optimal schedule depends on the data; with std 0.2 the steps sit below those for std 1."""
    _, narrow, _ = _optimise(0.2)
    _, wide, _ = _optimise(1.0)
    assert (narrow[1:-1] <= wide[1:-1]).mean() >= 6 / 7


def test_early_stopping_keeps_the_best_pass_and_refinement_only_adds_points():
    g = torch.Generator().manual_seed(0)
    data = (0.5 * torch.randn(256, 8, generator=g, dtype=torch.float64), None)
    scores = iter([5.0, 3.0, 4.0, 1.0])  # proxy: pass 1 improves, pass 2 does not -> stop, keep pass 1
    stages, history = ays.align_your_steps(_gaussian_denoiser(0.5), data, ays.log_snr(6, 0.002, 80.0), 5, 32, g,
                                           proxy=lambda s: next(scores), patience=1, refine_rounds=2)
    assert [h["sweep"] for h in history] == [0, 1, 2]
    np.testing.assert_array_equal(stages[0], history[1]["sigmas"])
    assert [len(s) - 1 for s in stages] == [6, 12, 24]
    np.testing.assert_array_equal(stages[1][0::2], stages[0])  # old points frozen
    np.testing.assert_array_equal(stages[2][0::2], stages[1])
    assert np.all(np.diff(stages[2]) < 0)


def test_optimisation_is_deterministic():
    a, b = _optimise(0.5, sweeps=1, seed=3), _optimise(0.5, sweeps=1, seed=3)
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(AlignYourStepsConfig, paper="align_your_steps", overrides=[f"profile={profile}"], root=REPO)
    assert cfg.profile == profile
    assert cfg.early_stopping.seed not in cfg.compare.seeds  # early stopping does not see the test seeds
    assert len(cfg.compare.seeds) >= 3 and cfg.optimize.num_steps in cfg.compare.nfe
    raw = yaml.safe_load((REPO / "papers" / "align_your_steps" / "params.yaml").read_text())
    for section, values in ((raw.get("profiles") or {}).get(profile) or {}).items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"


def test_claims_file_is_valid_and_matches_the_params():
    cfg = load_config(AlignYourStepsConfig, paper="align_your_steps", root=REPO)
    claims = load_claims(REPO / "papers" / "align_your_steps" / "claims.yaml")
    assert len(claims) == 9
    for c in claims:
        where = c["test"]["where"]
        assert where["group"] in cfg.compare.baselines and where["nfe"] in cfg.compare.nfe, c["id"]
