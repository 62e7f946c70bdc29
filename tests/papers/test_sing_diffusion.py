"""SingDiffusion (Zhang et al., CVPR 2024): the first step, the guided mean, the trained net, the start hook."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, sampler_gain

from common.claims import load_claims
from common.config import TrainConfig, load_config
from common.diffusion import NoiseSchedule
from common.sampling import Hooks, SampleNoise, SamplingSpec, generate_all, sample_seeds
from common.training import train
from papers.sing_diffusion.config import SingDiffusionConfig
from papers.sing_diffusion.method import (
    SingDiffusionNet,
    SingDiffusionStart,
    guided_mean,
    initial_singular_step,
    predict_mean,
    singularity_loss,
    start_gap_nats,
)
from papers.sing_diffusion.train import class_means

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = NoiseSchedule()  # the shared base model's: linear betas 1e-4..0.02, T = 1000


def _model(x, t, c):
    """A smooth, nonlinear stand-in for eps_theta."""
    return 0.7 * x + 0.3 * torch.sin(3 * x) + 1e-3 * t.to(x.dtype).reshape(-1, 1, 1, 1)


# --------------------------------------------------------------------------- the first step
def test_initial_step_hand_computed():
    """ab = 0.25: x_t0 = 0.5 ybar + sqrt(0.75) x_1, values worked out by hand."""
    ybar = torch.tensor([1.0, -1.0, 0.5])
    x1 = torch.tensor([0.2, 0.4, -2.0])
    got = initial_singular_step(x1, ybar, 0.25)
    assert got.tolist() == pytest.approx([0.673205081, -0.153589838, -1.482050808], abs=1e-6)
    assert initial_singular_step(x1, ybar, 0.0).tolist() == pytest.approx(x1.tolist())  # a true t = 1: x_1 itself
    assert initial_singular_step(x1, ybar, 1.0).tolist() == pytest.approx(ybar.tolist())


@pytest.mark.parametrize("t0", [999, 981, 900, 800])
def test_initial_step_is_the_official_add_noise(t0):
    """Official code: `scheduler.add_noise(ybar, x_1, timesteps[0])` of the base pipeline's scheduler."""
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(t0)
    ybar, x1 = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1, torch.randn(2, 1, 4, 4, generator=g)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    expected = ref.add_noise(ybar, x1, torch.tensor([t0]))
    torch.testing.assert_close(initial_singular_step(x1, ybar, SCHEDULE.alpha_bar(t0)), expected, atol=1e-6, rtol=0)
    assert float(SCHEDULE.alpha_bar(999)) == pytest.approx(4.0358e-5, rel=1e-4)  # this schedule's ab_{T-1}


def test_normalized_guided_mean():
    """Official pipeline, s > 1: (ybar_u + s (ybar_c - ybar_u)) / s; s <= 1: the conditional mean."""
    c, u = torch.tensor([1.0, -0.5]), torch.tensor([0.2, -0.9])
    assert guided_mean(c, u, 7.5).tolist() == pytest.approx([6.2 / 7.5, (-0.9 + 7.5 * 0.4) / 7.5])
    assert guided_mean(c, u, 7.5, normalize=False).tolist() == pytest.approx([6.2, 2.1])
    assert guided_mean(c, u, 1.0).tolist() == pytest.approx(c.tolist())


def test_predict_mean_uses_the_null_class_for_guidance():
    net = SingDiffusionNet(3, (1, 2, 2))
    c = torch.tensor([0, 2])
    with torch.no_grad():
        yc, yu = net(c), net(torch.tensor([3, 3]))
    torch.testing.assert_close(predict_mean(net, c, 2, 3.0), (yu + 3 * (yc - yu)) / 3)
    torch.testing.assert_close(predict_mean(net, c, 2, 1.0), yc)
    torch.testing.assert_close(predict_mean(net, None, 2), net(torch.tensor([3, 3])).detach())  # unconditional


def test_start_gap_hand_computed():
    """KL bound = 1/2 [ab ||x0||^2 - D ab - D log(1 - ab)]: x0 = ones(4), ab = 0.01 -> -2 log(0.99)."""
    x0 = torch.ones(3, 1, 2, 2)
    assert float(start_gap_nats(x0, 0.01)) == pytest.approx(-2 * np.log(0.99), rel=1e-12)
    assert float(start_gap_nats(x0, 0.0)) == 0.0
    assert float(start_gap_nats(torch.zeros(2, 1, 2, 2), 0.01)) == pytest.approx(2 * (-0.01 - np.log(0.99)))


# --------------------------------------------------------------------------- the trained net
def _toy_data(n_per_class=200, seed=0):
    """3 classes of 1x4x4 images: a class pattern plus N(0, 0.3^2) pixel noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.stack([torch.full((1, 4, 4), -0.8), torch.linspace(-1, 1, 16).reshape(1, 4, 4),
                            torch.eye(4).reshape(1, 4, 4) * 1.5 - 0.5])
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = patterns[y] + 0.3 * torch.randn(len(y), 1, 4, 4, generator=g)
    return x, y


def _train_toy(tmp_path, steps=300):
    torch.manual_seed(0)
    x, y = _toy_data()
    net = SingDiffusionNet(3, (1, 4, 4), embed_dim=16, hidden=64)
    cfg = TrainConfig(steps=steps, batch_size=64, lr=0.01, warmup_steps=0, lr_schedule="cosine", ema_decay=0.99,
                      checkpoint_every=steps, log_every=50, seed=0)
    res = train(net, lambda m, xb, yb, gen: singularity_loss(m, xb, yb, gen, cond_dropout=0.2), (x, y), cfg,
                tmp_path / "ckpt", desc="toy")
    return res.model.eval(), x, y


def test_trained_net_recovers_the_class_means(tmp_path):
    """The loss at t = 1 has the closed-form minimiser E[x0 | c] (class means; the overall mean for the null class)."""
    net, x, y = _train_toy(tmp_path)
    with torch.no_grad():
        pred = net(torch.arange(4))
    target = class_means(x, y, 3)
    err = (pred - target).abs()
    assert err[:3].max() < 0.03, err.amax(dim=(1, 2, 3))  # classes: ~200 images each, seen every step
    assert err[3].max() < 0.06, err.amax(dim=(1, 2, 3))  # null class: 20% of each batch
    assert err.mean() < 0.02
    # and the closed form is not trivially close: the classes differ by much more than the tolerance
    assert (target[:3, None] - target[None, :3]).abs().amax(dim=(2, 3, 4)).sum() > 3


def test_training_is_deterministic(tmp_path):
    a, _, _ = _train_toy(tmp_path / "a", steps=30)
    b, _, _ = _train_toy(tmp_path / "b", steps=30)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


# --------------------------------------------------------------------------- the start hook on the shared sampler
class _IdentityStart(Hooks):
    """A start hook that records what it gets and changes nothing."""

    def __init__(self, seen):
        self.seen = seen

    def start(self, x, c, t, gens):
        self.seen.append((t, len(gens)))
        return x


@pytest.mark.parametrize("sampler, eta", [("ddim", 0.0), ("ddim", 1.0), ("dpm_solver_2m", 0.0), ("ddpm", 0.0)])
def test_start_hook_runs_the_shared_sampler_from_x_t0(sampler, eta):
    """The method arm is the shared sampler from x_{t0}: a no-op start hook changes nothing, at eta > 0 and for
    DDPM too (the hook consumes none of the sampler's noise draws), and the real start moves x_1 by the first step."""
    spec = SamplingSpec(7, 5, sampler, eta, spacing="leading", seed=3)
    seen = []
    base, labels = generate_all(_model, SCHEDULE, spec, (1, 4, 4), 3)
    same, _ = generate_all(_model, SCHEDULE, spec, (1, 4, 4), 3, hooks_factory=lambda: _IdentityStart(seen),
                           batch_size=3)
    # other batch sizes: _model is elementwise, so there is no reduction to reassociate: at most sin's vectorised
    # and scalar paths round differently, once per call. x0 at t0 = 800 (and DPM-Solver-2M's extrapolation,
    # weights 1 + 1/r with r >= 0.24 on this grid) magnify that
    tol = fp32_tolerance(scale=1.0, steps=spec.nfe, amplification=(1 + 1 / 0.24) * sampler_gain(SCHEDULE, 800))
    torch.testing.assert_close(base, same, atol=tol, rtol=0)
    other, _ = generate_all(_model, SCHEDULE, replace(spec, seed=4), (1, 4, 4), 3)
    assert (other - base).abs().flatten(1).amax(1).min() > NEGATIVE_CONTROL * tol  # another seed: far outside
    assert seen == [(800, 3), (800, 3), (800, 1)]  # leading, 5 steps: t0 = 800; per-sample generators
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0]

    net = SingDiffusionNet(3, (1, 4, 4))
    method = lambda: SingDiffusionStart(net, SCHEDULE)  # noqa: E731
    a, _ = generate_all(_model, SCHEDULE, spec, (1, 4, 4), 3, hooks_factory=method)
    b, _ = generate_all(_model, SCHEDULE, spec, (1, 4, 4), 3, hooks_factory=method)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    if sampler != "ddpm" and eta == 0:  # stochastic samplers largely forget the start (ab_800 = 0.02)
        assert (a - base).abs().max() > NEGATIVE_CONTROL * tol
    # the method arm's start is the base arm's x_1 moved by the first step
    x1 = SampleNoise(sample_seeds(3, 7), (1, 4, 4))()
    expected = initial_singular_step(x1, predict_mean(net, labels, 7), SCHEDULE.alpha_bar(800))
    torch.testing.assert_close(SingDiffusionStart(net, SCHEDULE).start(x1, labels, 800, None), expected)


def test_stochastic_method_arm_draws_the_baselines_step_noise():
    """DDIM eta = 1 from x_{t0}: the same per-step noise as the baseline (the old loop handed the sampler x_{t0}
    as its noise source, so every later draw repeated x_{t0}). Replaying the draws by hand checks it."""
    spec = SamplingSpec(2, 3, "ddim", 1.0, spacing="leading", seed=5)
    net = SingDiffusionNet(3, (1, 4, 4))
    got, labels = generate_all(_model, SCHEDULE, spec, (1, 4, 4), 3,
                               hooks_factory=lambda: SingDiffusionStart(net, SCHEDULE))
    noise = SampleNoise(sample_seeds(5, 2), (1, 4, 4))
    x = initial_singular_step(noise(), predict_mean(net, labels, 2), SCHEDULE.alpha_bar(666))
    steps = [666, 333, 0, -1]
    for t, t_next in zip(steps[:-1], steps[1:]):
        ab, ab_next = SCHEDULE.alpha_bar(t), SCHEDULE.alpha_bar(t_next)
        x0 = SCHEDULE.predict_x0(x, _model(x, torch.full((2,), t), None), t).clamp(-1, 1)
        eps = SCHEDULE.predict_eps(x, x0, t)
        sigma = ((1 - ab_next) / (1 - ab) * (1 - ab / ab_next)).sqrt()
        x = (ab_next.sqrt() * x0 + (1 - ab_next - sigma**2).sqrt() * eps).float()
        if t_next >= 0:
            x = (x + sigma * noise()).float()
    torch.testing.assert_close(got, x, atol=fp32_tolerance(steps=3 * 3, amplification=sampler_gain(SCHEDULE, 666)),
                               rtol=0)


# --------------------------------------------------------------------------- configuration and claims
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(SingDiffusionConfig, paper="sing_diffusion", overrides=[f"profile={profile}"], root=REPO)
    assert set(cfg.compare.samplers) <= {"ddim", "dpm_solver_2m"}
    h = cfg.histogram
    assert h.sampler in cfg.compare.samplers and h.spacing in cfg.compare.spacings and h.nfe in cfg.compare.nfe


def test_every_claim_names_a_setting_the_cpu_profile_runs():
    cfg = load_config(SingDiffusionConfig, paper="sing_diffusion", overrides=["profile=cpu"], root=REPO)
    grids = {"compare": cfg.compare, "guided": cfg.guided}
    claims = load_claims(REPO / "papers/sing_diffusion/claims.yaml")
    for c in claims:
        w = c["test"]["where"]
        g = grids[w["stage"]]
        assert w["sampler"] in g.samplers and w["spacing"] in g.spacings and w["nfe"] in g.nfe, c["id"]
    params = yaml.safe_load((REPO / "papers/sing_diffusion/params.yaml").read_text())
    assert params["seeds"] == [1, 2, 3] and len(params["seeds"]) >= 3
