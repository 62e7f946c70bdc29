"""Residual correction (Zhang et al., CVPR 2024): the gap, the correction, the pairing, the size ratio.

Gaussian toy (as in tests/papers/test_epsilon_scaling.py): data N(0, s^2) with s = 0.5 and the exact
epsilon model, linear betas 1e-4..0.02 (T = 1000), DDIM eta = 0 with ADM respacing, no clipping.
Every DDIM step is then a scalar multiple of its input, so the simulated pair is x_hat_0 = k_inv(M)
c_N x_0 and the gap R1 is (1 - k_inv c_N) x_0, with k_inv and c_N from plain float64 recursions
written here independently of the code under test. The probability-flow ODE of Gaussian data is
x_t = x_0 sqrt(ab_t s^2 + 1 - ab_t) / s, the closed form a fine inversion must approach.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, network_roundings, sampler_gain

from common.claims import load_claims
from common.config import ConfigError, load_config
from common.diffusion import NoiseSchedule, unet_fn
from common.models import build_unet, count_parameters
from common.sampling import Hooks, SamplingSpec, generate_all, sample, timesteps
from papers.residual_correction.config import ResidualCorrectionConfig
from papers.residual_correction.cost import flops_per_call, size_ratio
from papers.residual_correction.evaluate import sample_both_arms
from papers.residual_correction.method import (
    ResidualCorrection,
    correct,
    ddim_inversion,
    residual,
    residual_loss,
    sampler_output,
    simulate_residuals,
    unet_correction,
)
from papers.residual_correction.train import apply_correction, build_correction, fit_correction, gap_before_after

REPO = Path(__file__).resolve().parents[2]
PAPER = "residual_correction"
S = 0.5
SCHEDULE = NoiseSchedule()
AB = SCHEDULE.alphas_cumprod.numpy()


def exact_eps(x, t, c):
    ab = SCHEDULE.alpha_bar(t).reshape(-1, *([1] * (x.dim() - 1)))
    return ((1 - ab).sqrt() * x / (ab * S**2 + 1 - ab)).to(x.dtype)


def inversion_scalar(m: int) -> float:
    """k_inv with x_T = k_inv x_0: the DDIM update upwards over [-1, 0, ..., 999] (eps at t_a, t = -1 read as 0)."""
    grid = [-1] + list(np.round(np.linspace(0, 999, m)).astype(int))
    k = 1.0
    for ta, tb in zip(grid[:-1], grid[1:]):
        a, b, a_eval = (1.0 if ta < 0 else AB[ta]), AB[tb], AB[max(ta, 0)]
        e = np.sqrt(1 - a_eval) * k / (a_eval * S**2 + 1 - a_eval)
        k = np.sqrt(b) * (k - np.sqrt(1 - a) * e) / np.sqrt(a) + np.sqrt(1 - b) * e
    return k


def sampler_scalar(n: int) -> float:
    """c_N with x_hat_0 = c_N x_T: the N-step DDIM sampler downwards to data."""
    ts = np.round(np.linspace(0, 999, n))[::-1].astype(int)
    c = 1.0
    for i, t in enumerate(ts):
        a, a_prev = AB[t], (AB[ts[i + 1]] if i + 1 < n else 1.0)
        e = np.sqrt(1 - a) * c / (a * S**2 + 1 - a)
        c = np.sqrt(a_prev) * (c - np.sqrt(1 - a) * e) / np.sqrt(a) + np.sqrt(1 - a_prev) * e
    return c


X0 = torch.tensor([[0.3], [-0.8], [1.1]], dtype=torch.float64)


# --------------------------------------------------------------------------- the gap and the objective, by hand
def test_residual_and_objective_on_hand_made_tensors():
    x0 = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    x_hat = torch.tensor([[[[0.5, -1.0], [0.0, 0.25]]]])
    nfe = torch.tensor([5])
    torch.testing.assert_close(residual(x0, x_hat), torch.tensor([[[[0.5, 0.0], [0.5, -0.25]]]]))
    # r = 0.25 everywhere: x_hat + r - x0 = [[-0.25, 0.25], [-0.25, 0.5]] -> mean of squares 0.4375 / 4
    assert residual_loss(lambda x, n: torch.full_like(x, 0.25), x_hat, nfe, x0).item() == pytest.approx(0.109375)
    zero = lambda x, n: torch.zeros_like(x)  # noqa: E731  r = 0: the loss is the mean squared gap itself
    assert residual_loss(zero, x_hat, nfe, x0).item() == pytest.approx((0.25 + 0 + 0.25 + 0.0625) / 4)
    perfect = lambda x, n: residual(x0, x)  # noqa: E731  r = the gap closes it exactly
    assert residual_loss(perfect, x_hat, nfe, x0).item() == 0.0
    torch.testing.assert_close(correct(perfect, x_hat, nfe), x0)


def test_correction_sees_the_nfe():
    seen = []
    r = lambda x, n: seen.append(n.tolist()) or torch.zeros_like(x)  # noqa: E731
    correct(r, torch.zeros(2, 1, 2, 2), torch.tensor([5, 10]))
    assert seen == [[5, 10]]


# --------------------------------------------------------------------------- the pairing on the Gaussian toy
@pytest.mark.parametrize("m", [5, 20, 1000])
def test_inversion_matches_the_scalar_recursion(m):
    x_T = ddim_inversion(exact_eps, SCHEDULE, X0, None, m)
    torch.testing.assert_close(x_T, X0 * inversion_scalar(m), atol=1e-12, rtol=1e-10)


def test_fine_inversion_approaches_the_probability_flow_ode():
    flow = np.sqrt(AB[999] * S**2 + 1 - AB[999]) / S  # = 1.99997: x_T of Gaussian data under the exact ODE
    ratio = ddim_inversion(exact_eps, SCHEDULE, X0, None, 1000) / X0
    assert ratio.numpy() == pytest.approx(flow, rel=3e-3)
    coarse = ddim_inversion(exact_eps, SCHEDULE, X0, None, 100) / X0
    assert abs(coarse[0].item() - flow) > abs(ratio[0].item() - flow)  # finer inversion, closer to the ODE
    # there and back with fine steps is nearly the identity
    back = sampler_output(exact_eps, SCHEDULE, X0 * ratio, None, 1000, clip_x0=False)
    torch.testing.assert_close(back, X0, atol=0, rtol=6e-3)


@pytest.mark.parametrize("m, grid", [(20, [5, 10, 20]), (1000, [5])])
def test_simulated_gap_matches_the_scalar_recursions(m, grid):
    """R1 on the toy: x_hat_0 = k_inv(M) c_N x_0, gap = (1 - k_inv c_N) x_0; NFE-major layout."""
    x_hat, nfe, x0 = simulate_residuals(exact_eps, SCHEDULE, X0, None, grid, m, clip_x0=False)
    assert nfe.tolist() == [n for n in grid for _ in range(len(X0))]
    torch.testing.assert_close(x0, X0.repeat(len(grid), 1))
    expected = torch.cat([X0 * inversion_scalar(m) * sampler_scalar(n) for n in grid])
    torch.testing.assert_close(x_hat, expected, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(residual(x0, x_hat), x0 - expected, atol=1e-12, rtol=1e-10)
    if m == 20:  # one hand-checked number: N = 5 after 20 inversion steps keeps 38.8% of x_0
        assert (x_hat[0] / X0[0]).item() == pytest.approx(1.7224440 * 0.2250456, abs=1e-6)


# --------------------------------------------------------------------------- identity and the sampler hook
def _toy_model(x, t, c):
    return 0.7 * x + 1e-3 * t.float().reshape(-1, 1, 1, 1)


def _noise(seed=0, n=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return lambda: x.clone()


def test_zero_network_is_the_identity():
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, root=REPO)
    net = build_correction(cfg, 16, 1)  # the output layer starts at zero
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    assert torch.equal(correct(unet_correction(net), x, torch.full((4,), 5)), x)
    assert torch.equal(apply_correction(net, x, 10, batch_size=3), x)
    assert net.conv_out.weight.abs().sum() == 0 and any(p.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("nfe", [1, 5])
def test_hook_with_zero_correction_is_the_plain_sampler(nfe):
    steps = timesteps(nfe)
    plain = sample(_toy_model, SCHEDULE, _noise(), None, steps, "ddim", 0.0, True, Hooks())
    hooked = sample(_toy_model, SCHEDULE, _noise(), None, steps, "ddim", 0.0, True,
                    ResidualCorrection(lambda x, n: torch.zeros_like(x), nfe))
    assert torch.equal(plain, hooked)


def test_hook_on_the_last_step_equals_correcting_the_output():
    """Applying r_phi to the last step's x0 is the same as adding it to the sampler's output."""
    r = lambda x, n: 0.1 * torch.tanh(3 * x) + 1e-3 * n.float().reshape(-1, 1, 1, 1)  # noqa: E731
    nfe = 5
    steps = timesteps(nfe)
    plain = sample(_toy_model, SCHEDULE, _noise(1), None, steps, "ddim", 0.0, True, Hooks())
    hooked = sample(_toy_model, SCHEDULE, _noise(1), None, steps, "ddim", 0.0, True, ResidualCorrection(r, nfe))
    torch.testing.assert_close(hooked, correct(r, plain, torch.full((3,), nfe)), atol=1e-6, rtol=0)
    assert not torch.allclose(hooked, plain, atol=1e-3)
    hook, x = ResidualCorrection(r, nfe), torch.ones(2, 1, 2, 2)
    assert all(hook.x0(x, None, i, 500) is x for i in range(nfe - 1))  # earlier steps untouched


# --------------------------------------------------------------------------- determinism
def _tiny_unet(seed=0):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=["profile=tiny"], root=REPO)
    torch.manual_seed(seed)
    return build_unet(cfg.base_model.unet, 8, 1).eval()


def test_simulation_is_deterministic_and_batch_independent():
    net = _tiny_unet()
    fn, grid, inversion_steps = unet_fn(net), [2, 4], 6
    g = torch.Generator().manual_seed(3)
    x0, c = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1, torch.arange(6) % 10
    a = simulate_residuals(fn, SCHEDULE, x0, c, grid, inversion_steps)
    b = simulate_residuals(fn, SCHEDULE, x0, c, grid, inversion_steps)
    for u, v in zip(a, b):
        assert torch.equal(u, v)  # the same batch on the same machine: bit-identical
    halves = [simulate_residuals(fn, SCHEDULE, x0[s], c[s], grid, inversion_steps) for s in (slice(0, 3), slice(3, 6))]
    x_hat = torch.stack([torch.cat([h[0][k * 3 : (k + 1) * 3] for h in halves]) for k in range(2)]).flatten(0, 1)
    # batches of 6 vs 3 round differently inside the network; x_hat in [-1, 1] comes from 6 inversion calls
    # and up to 4 sampler calls, and the sampler's x0 prediction at t = 999 magnifies their rounding
    tol = fp32_tolerance(scale=1.0, steps=(inversion_steps + max(grid)) * network_roundings(net),
                         amplification=sampler_gain(SCHEDULE, timesteps(max(grid))[0]))
    torch.testing.assert_close(x_hat, a[0], atol=tol, rtol=0)
    # the check can fail: mixing up samples (another x_0 for the same row) moves every row by far more
    assert (a[0] - a[0].roll(1, 0)).abs().flatten(1).amax(1).min() > NEGATIVE_CONTROL * tol


def test_training_is_deterministic(tmp_path):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, root=REPO,
                      overrides=["profile=tiny", "correction.train.steps=4", "correction.train.checkpoint_every=2",
                                 "tracking.enabled=false"])
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    x_hat = (x0 + 0.2 * torch.randn(16, 1, 8, 8, generator=g)).repeat(2, 1, 1, 1)
    train = {"x_hat": x_hat, "nfe": torch.tensor([5] * 16 + [10] * 16), "x0": x0.repeat(2, 1, 1, 1)}
    pairs = {"train": train, "nfe_grid": [5, 10]}
    nets = [fit_correction(cfg, pairs, tmp_path / name).model for name in ("a", "b")]
    for (k, u), (_, v) in zip(nets[0].state_dict().items(), nets[1].state_dict().items()):
        assert torch.equal(u, v), k
    gaps = gap_before_after(nets[0], train, [5, 10])
    assert gaps[5]["before"] == pytest.approx(float(((x0 - x_hat[:16]) ** 2).mean()))
    assert gaps[5]["after"] < gaps[5]["before"]  # a few steps already shrink the gap on the training pairs


def test_evaluate_samples_through_the_correction_hook(monkeypatch):
    """evaluate.py's arms come from one sampler run whose last step's x0 goes through ResidualCorrection.x0:
    the test fails if the hook is not called (e.g. the correction applied after the sampler instead)."""
    calls = []
    hook_x0 = ResidualCorrection.x0

    def spy(self, x0, x, i, t):
        calls.append(i)
        return hook_x0(self, x0, x, i, t)

    monkeypatch.setattr(ResidualCorrection, "x0", spy)
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=["profile=tiny"], root=REPO)
    torch.manual_seed(1)
    net = build_correction(cfg, 8, 1)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)  # a correction that does something
    fn, spec = unet_fn(_tiny_unet()), SamplingSpec(5, 3, "ddim", seed=0)
    arms = sample_both_arms(fn, SCHEDULE, spec, (1, 8, 8), 10, net)
    assert calls == [0, 1, 2]  # every step, and the last one corrects
    assert torch.equal(arms["x_hat"], generate_all(fn, SCHEDULE, spec, (1, 8, 8), 10)[0])  # the baseline arm
    assert torch.equal(arms["x_tilde"], apply_correction(net, arms["x_hat"], 3))  # R2 on the same samples
    assert (arms["x_tilde"] - arms["x_hat"]).abs().max() > 1e-2
    assert arms["model_calls"] == 5 * 3 and arms["t_correction"] > 0


# --------------------------------------------------------------------------- size ratio
def test_params_and_flops_by_hand():
    lin, conv = nn.Linear(3, 4), nn.Conv2d(1, 2, 3, padding=1)
    assert count_parameters(lin) == 3 * 4 + 4 and count_parameters(conv) == 1 * 2 * 9 + 2
    x_lin, x_conv = torch.zeros(1, 3), torch.zeros(1, 1, 4, 4)
    assert flops_per_call(lambda: lin(x_lin)) == 2 * 3 * 4  # 2 per multiply-add
    assert flops_per_call(lambda: conv(x_conv)) == 2 * 9 * 2 * 16  # 9 MACs x 2 channels x 16 positions
    size = size_ratio(lin, lambda: lin(x_lin), conv, lambda: conv(x_conv))
    assert size.params_ratio == pytest.approx(20 / 16)
    assert size.flops_ratio == pytest.approx(576 / 24)
    assert size.sampling_overhead(5) == pytest.approx(576 / (5 * 24))
    assert size.sampling_overhead(5, calls_per_step=2) == pytest.approx(576 / (10 * 24))
    d = size.to_dict()
    assert d["base_params"] == 16 and d["correction_flops"] == 576 and d["params_ratio"] == size.params_ratio


def test_cpu_profile_correction_is_much_smaller_than_the_base():
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, root=REPO)
    base = build_unet(cfg.base_model.unet, cfg.data.resolution, 1)
    corr = build_correction(cfg, cfg.data.resolution, 1)
    x = torch.zeros(1, 1, cfg.data.resolution, cfg.data.resolution)
    size = size_ratio(base, lambda: base(x, torch.tensor([500]), class_labels=torch.tensor([0])),
                      corr, lambda: corr(x, torch.tensor([5])))
    assert size.correction_params == count_parameters(corr) < 0.1 * size.base_params
    assert size.correction_flops < 0.1 * size.base_flops


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=[f"profile={profile}"], root=REPO)
    assert cfg.profile == profile and len(cfg.evaluate.seeds) >= 3
    assert set(cfg.evaluate.nfe) <= set(cfg.simulate.nfe)
    raw = yaml.safe_load((REPO / "papers" / PAPER / "params.yaml").read_text())
    for section, values in ((raw.get("profiles") or {}).get(profile) or {}).items():
        for key, value in values.items():
            got = getattr(getattr(cfg, section), key)
            if isinstance(value, dict):
                for k, v in value.items():
                    assert getattr(got, k) == v, f"{section}.{key}.{k}"
            else:
                assert got == value, f"{section}.{key}"


def test_an_nfe_the_correction_never_saw_fails_with_the_key():
    with pytest.raises(ConfigError, match="evaluate.nfe"):
        load_config(ResidualCorrectionConfig, paper=PAPER, overrides=["evaluate.nfe=[5,7]"], root=REPO)


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / PAPER / "claims.yaml")
    assert [c["id"] for c in claims][:3] == ["rc-lowers-fid-nfe5", "rc-lowers-fid-nfe10", "rc-lowers-fid-nfe20"]
    assert all(c["test"]["metric"] for c in claims)
