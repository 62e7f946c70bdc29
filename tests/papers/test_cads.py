"""CADS (Sadat et al., ICLR 2024): schedule, corruption, the class-embedding hook, the baseline, the config.

References: gamma(t) (eq. 2) and y_hat (eq. 1) by hand; a check derived here from eqs. 1-2 (tau1 0.6,
tau2 0.9, s 0.25 as in the A1111 extension v0xie/sd-webui-cads, scripts/cads.py; t 0.75 -> gamma = 0.15 / 0.3
= 0.5, y_hat = sqrt(0.5) y + 0.25 sqrt(0.5) n = 0.70711 y + 0.17678 n); eq. 3's rescaling restores each row's
mean and std; per-sample noise makes samples independent of the batch size.
"""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, guidance_gain, network_roundings, sampler_gain

from common.claims import evaluate_claims, load_claims
from common.config import UNetConfig, load_config
from common.diffusion import NoiseSchedule, unet_fn
from common.models import build_unet
from common.sampling import SampleNoise, SamplingSpec, classifier_free_guidance, generate_all, generate_samples, sample
from papers.cads.config import CADSConfig
from papers.cads.evaluate import claim_rows
from papers.cads.method import CADS, CADSHooks, GuidanceAnnealing, condition_annealing, diffusion_time, gamma_schedule

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = NoiseSchedule()
NULL = 10


def rows(n=4, d=128, seed=0, scale=0.9, shift=0.1):
    g = torch.Generator().manual_seed(seed)
    return shift + scale * torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)


# --------------------------------------------------------------------------- eq. 2
@pytest.mark.parametrize("t, expected", [(0.0, 1.0), (0.3, 1.0), (0.6, 1.0), (0.63, 0.9), (0.66, 0.8), (0.75, 0.5),
                                         (0.81, 0.3), (0.87, 0.1), (0.9, 0.0), (0.95, 0.0), (1.0, 0.0)])
def test_gamma_hand_computed(t, expected):
    """tau1 = 0.6, tau2 = 0.9: gamma = (0.9 - t) / 0.3 in between, 1 before, 0 after."""
    cads = CADS(0.6, 0.9)
    assert cads.gamma(t) == pytest.approx(expected, abs=1e-12)
    assert float(cads.gamma(torch.tensor([t], dtype=torch.float64))) == pytest.approx(expected, abs=1e-12)


def test_gamma_on_the_sampler_grid():
    """20 linspace steps: t_train = 999, 946, 894, ... -> t = t_train / 999."""
    steps = [999, 946, 894, 841, 789, 736, 683, 631, 578]
    got = gamma_schedule(CADS(0.6, 0.9), steps, 1000)
    want = [min(max((0.9 - t / 999) / 0.3, 0.0), 1.0) for t in steps]
    assert got == pytest.approx(want, abs=1e-12)
    assert got[0] == 0.0 and got[-1] == 1.0 and got[4] == pytest.approx((0.9 - 789 / 999) / 0.3)
    assert diffusion_time(999, 1000) == 1.0 and diffusion_time(0, 1000) == 0.0


@pytest.mark.parametrize("kwargs", [dict(tau1=0.9, tau2=0.6), dict(tau1=0.5, tau2=0.5), dict(tau2=1.2),
                                    dict(s=-0.1), dict(psi=1.5)])
def test_invalid_hyperparameters(kwargs):
    with pytest.raises(ValueError, match="CADS"):
        CADS(**kwargs)


# --------------------------------------------------------------------------- eqs. 1, 3, 4
def test_notes_reference_check_without_rescaling():
    """Derived here from eqs. 1-2: t = 0.75 -> gamma = 0.5; psi = 0: y_final = y_hat = 0.70711 y + 0.17678 n."""
    cads = CADS(0.6, 0.9, s=0.25, psi=0.0)
    y, n = rows()
    g = cads.gamma(0.75)
    assert g == pytest.approx(0.5)
    assert torch.allclose(cads.corrupt(y, g, n), 0.70710678 * y + 0.17677670 * n, atol=1e-6)


def test_rescaling_restores_each_rows_mean_and_std():
    y, n = rows(scale=torch.tensor([[0.5], [1.0], [2.0], [3.0]]), shift=torch.tensor([[0.0], [1.0], [-2.0], [0.3]]))
    for g in (0.0, 0.3, 0.5, 0.9):
        out = CADS(s=0.25, psi=1.0).corrupt(y.double(), g, n.double())
        assert torch.allclose(out.mean(1), y.double().mean(1), atol=1e-12)
        assert torch.allclose(out.std(1), y.double().std(1), atol=1e-12)
        raw = CADS(s=0.25, psi=0.0).corrupt(y.double(), g, n.double())  # psi = 0: y_hat, statistics drift
        assert not torch.allclose(raw.std(1), y.double().std(1), atol=1e-3)


def test_psi_mixes_rescaled_and_raw():
    """eq. 4: psi = 0.5 is the average of the psi = 1 (rescaled) and psi = 0 (raw y_hat) outputs."""
    y, n = rows()
    one, zero, half = (CADS(s=0.25, psi=p).corrupt(y, 0.4, n) for p in (1.0, 0.0, 0.5))
    assert torch.allclose(zero, math.sqrt(0.4) * y + 0.25 * math.sqrt(0.6) * n, atol=1e-6)
    assert torch.allclose(half, 0.5 * one + 0.5 * zero, atol=1e-6)


def test_gamma_zero_is_pure_noise_with_the_embeddings_statistics():
    y, n = rows()
    out = CADS(s=0.25, psi=1.0).corrupt(y.double(), 0.0, n.double())
    z = (n.double() - n.double().mean(1, keepdim=True)) / n.double().std(1, keepdim=True)
    assert torch.allclose(out, z * y.double().std(1, keepdim=True) + y.double().mean(1, keepdim=True), atol=1e-12)


def test_gamma_one_and_s_zero_leave_the_embedding_unchanged():
    y, n = rows()
    assert torch.equal(CADS().corrupt(y, 1.0, n), y)
    assert torch.equal(CADS().corrupt(y, torch.ones(4, dtype=torch.float64), n), y)
    assert torch.equal(CADS(s=0.0).corrupt(y, 0.0, n), y)


def test_per_sample_gamma():
    y, n = rows()
    g = torch.tensor([1.0, 0.5, 0.0, 0.25], dtype=torch.float64)
    out = CADS(psi=0.0).corrupt(y, g, n)
    for j in range(4):
        assert torch.allclose(out[j], CADS(psi=0.0).corrupt(y[j:j + 1], float(g[j]), n[j:j + 1])[0], atol=1e-6)


# --------------------------------------------------------------------------- the class-embedding hook
def tiny_unet(seed=0):
    torch.manual_seed(seed)
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], norm_num_groups=4, layers_per_block=1,
                     attention_head_dim=4, num_classes=10)
    return build_unet(cfg, resolution=8, channels=1).eval().requires_grad_(False)


def _gens(n, seed=0):
    return [torch.Generator().manual_seed(seed + j) for j in range(n)]


def test_hook_noises_conditional_rows_only():
    """The embedding hook sees the conditional branch's rows; a sample that asks for the null class keeps it."""
    h = CADSHooks(CADS(), 1000, NULL)
    x = torch.randn(3, 1, 8, 8)
    assert h.start(x, None, 999, _gens(3)) is x
    labels = torch.tensor([1, 2, NULL])
    y = torch.randn(3, 32)
    out = h.embedding(y, labels, 0, 999)  # t = 1: gamma = 0
    assert h.gammas == [0.0]
    assert not torch.allclose(out[:2], y[:2]) and torch.equal(out[2], y[2])
    assert torch.allclose(out[:2].std(1), y[:2].std(1), atol=1e-5)
    with pytest.raises(ValueError, match="per-sample"):
        h.start(x, None, 999, None)


def test_noise_is_fresh_each_step_per_sample_and_independent_of_the_schedule():
    draws = []
    for cads in (CADS(0.6, 0.9, 0.25, psi=0.0), CADS(0.1, 0.5, 2.0, psi=0.0)):
        h = CADSHooks(cads, 1000, NULL)
        h.start(None, None, 999, _gens(2))
        steps = []
        for i, t in enumerate([999, 500, 0]):
            y = torch.zeros(2, 16)
            g = cads.gamma(t / 999)
            # psi = 0: y_final = s sqrt(1 - gamma) n, so n can be read back where gamma < 1
            steps.append(h.embedding(y, torch.tensor([0, 1]), i, t) / (cads.s * (1 - g) ** 0.5) if g < 1 else None)
        draws.append(steps[0])
    assert torch.allclose(draws[0], draws[1], atol=1e-6)  # the same n whatever the schedule
    one = CADSHooks(CADS(psi=0.0), 1000, NULL)
    one.start(None, None, 999, _gens(2)[1:])  # sample 1 alone: its own stream
    alone = one.embedding(torch.zeros(1, 16), torch.tensor([1]), 0, 999) / 0.25
    torch.testing.assert_close(alone[0], draws[0][1])


def test_cads_conditions_on_embeddings_and_leaves_the_network_as_it_was():
    """The shared sampler conditions the network on y_final: the same network, the same label table afterwards."""
    unet = tiny_unet()
    fn = unet_fn(unet)
    x, t, c = torch.randn(2, 1, 8, 8), torch.tensor([999, 999]), torch.tensor([3, 4])
    before = unet(x, t, class_labels=c).sample
    torch.testing.assert_close(fn(x, t, fn.embed(c)), before[:, :1], atol=0, rtol=0)  # embeddings = labels
    with condition_annealing(unet, CADS(), NULL) as hooks:
        h = hooks()
        h.start(x, c, 999, _gens(2))
        inside = fn(x, t, h.embedding(fn.embed(c), c, 0, 999))
    assert not torch.allclose(inside, before[:, :1])
    assert torch.equal(unet(x, t, class_labels=c).sample, before)
    assert isinstance(unet.class_embedding, torch.nn.Embedding)


def test_unconditional_unet_is_refused():
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], norm_num_groups=4, layers_per_block=1,
                     attention_head_dim=4, num_classes=0)
    with pytest.raises(TypeError, match="class-conditional"):
        with condition_annealing(build_unet(cfg, 8, 1), CADS(), NULL):
            pass


def test_gamma_one_at_every_step_is_the_plain_sampler():
    """Steps with t <= tau1 only: gamma = 1 throughout and CADS + CFG is exactly CFG."""
    unet = tiny_unet()
    fn = classifier_free_guidance(unet_fn(unet), 3.0, NULL)
    steps, c = [599, 400, 200, 0], torch.tensor([0, 5, 9])
    with torch.no_grad():
        plain = sample(fn, SCHEDULE, SampleNoise([1, 2, 3], (1, 8, 8)), c, steps, "ddpm")
        with condition_annealing(unet, CADS(0.6, 0.9, s=1.0), NULL) as hooks:
            cads = sample(fn, SCHEDULE, SampleNoise([1, 2, 3], (1, 8, 8)), c, steps, "ddpm", hooks=hooks())
            changed = sample(fn, SCHEDULE, SampleNoise([1, 2, 3], (1, 8, 8)), c, [999] + steps, "ddpm", hooks=hooks())
    assert torch.equal(plain, cads)
    with torch.no_grad():
        plain_long = sample(fn, SCHEDULE, SampleNoise([1, 2, 3], (1, 8, 8)), c, [999] + steps, "ddpm")
    assert not torch.allclose(changed, plain_long, atol=1e-4)  # a step with gamma = 0 does change the sample


@pytest.mark.parametrize("w", [1.0, 4.0])
def test_samples_do_not_depend_on_batch_size(w):
    """Per-sample seeds (x_T and the CADS noise): batches of 7 and of 3 give the same samples, up to float32
    reassociation in the network, amplified by guidance and the sampler's x0 prediction at t = 999."""
    unet = tiny_unet()
    spec = SamplingSpec(num_samples=7, nfe=4, method="ddpm", guidance_scale=w, seed=11)
    with condition_annealing(unet, CADS(0.1, 0.9, s=1.0), NULL) as hooks:
        a, ya = generate_all(unet_fn(unet), SCHEDULE, spec, (1, 8, 8), 10, batch_size=7, hooks_factory=hooks)
        b, yb = generate_all(unet_fn(unet), SCHEDULE, spec, (1, 8, 8), 10, batch_size=3, hooks_factory=hooks)
        again, _ = generate_all(unet_fn(unet), SCHEDULE, spec, (1, 8, 8), 10, batch_size=7, hooks_factory=hooks)
        other, _ = generate_all(unet_fn(unet), SCHEDULE, replace(spec, seed=12), (1, 8, 8), 10, batch_size=7,
                                hooks_factory=hooks)
    assert torch.equal(ya, yb)
    assert torch.equal(a, again)  # the same batch on the same machine: bit-identical
    # samples in [-1, 1]; 4 network calls per sample; guidance and x0 at t = 999 magnify each call's rounding
    tol = fp32_tolerance(scale=1.0, steps=spec.nfe * network_roundings(unet),
                         amplification=guidance_gain(w) * sampler_gain(SCHEDULE, spec.steps(1000)[0]))
    torch.testing.assert_close(a, b, atol=tol, rtol=0)
    # the check can fail: another seed (what a per-batch seed would give a sample) moves every sample by far more
    assert (other - a).abs().flatten(1).amax(1).min() > NEGATIVE_CONTROL * tol
    plain, _ = generate_all(unet_fn(unet), SCHEDULE, spec, (1, 8, 8), 10, batch_size=7)
    assert (a - plain).abs().max() > NEGATIVE_CONTROL * tol  # CADS does change the samples


# --------------------------------------------------------------------------- the baseline
def toy_model(x, t, c):
    """eps that depends on the class: eps = 0.1 x + c (c = 10 is the null class)."""
    return 0.1 * x + c.float().reshape(-1, 1, 1, 1)


def test_guidance_annealing_hand_computed():
    """eps = eps_u + gamma(t) w (eps_c - eps_u) through the shared guidance: eps_c - eps_u = c - 10."""
    x, c = torch.ones(2, 1, 2, 2), torch.tensor([3, 7])
    hook = GuidanceAnnealing(CADS(0.6, 0.9).gamma, 1000)
    fn = classifier_free_guidance(toy_model, lambda t: hook.guidance(4.0, t), NULL)
    for t_train, g in ((999, 0.0), (200, 1.0), (749, (0.9 - 749 / 999) / 0.3)):
        eps = fn(x, torch.full((2,), t_train), c)
        want = 0.1 + 10 + g * 4.0 * (c.float() - 10)
        assert torch.allclose(eps[:, 0, 0, 0], want, atol=1e-5)
    full = classifier_free_guidance(toy_model, 4.0, NULL)
    assert torch.allclose(fn(x, torch.full((2,), 100), c), full(x, torch.full((2,), 100), c))


def test_guidance_annealing_runs_through_the_sampler_and_counts_two_calls_a_step():
    """The dynamic-CFG arm is the shared sampler with the hook: the same samples as a hand-built annealed
    guidance function at scale 1, and the sampler counts both branches (no hand count)."""
    unet = tiny_unet()
    spec = SamplingSpec(num_samples=5, nfe=4, method="ddpm", guidance_scale=4.0, seed=3)
    gamma = CADS(0.1, 0.9).gamma
    got = generate_samples(unet_fn(unet), SCHEDULE, spec, (1, 8, 8), 10, hooks_factory=lambda: GuidanceAnnealing(gamma))
    by_hand = classifier_free_guidance(unet_fn(unet), lambda t: 4.0 * gamma(diffusion_time(t.double(), 1000)), NULL)
    ref = generate_samples(by_hand, SCHEDULE, replace(spec, guidance_scale=1.0), (1, 8, 8), 10)
    assert torch.equal(got.images, ref.images)
    assert (got.model_calls, got.nfe) == (5 * 4 * 2, 4)
    plain = generate_samples(unet_fn(unet), SCHEDULE, replace(spec, guidance_scale=1.0), (1, 8, 8), 10)
    assert (plain.model_calls, plain.nfe) == (5 * 4, 4)


# --------------------------------------------------------------------------- config, claims, budget
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_config_loads(profile):
    cfg = load_config(CADSConfig, paper="cads", overrides=[f"profile={profile}"], root=REPO)
    assert max(cfg.compare.guidance_scales) in cfg.compare.dynamic_cfg_scales
    assert max(cfg.compare.guidance_scales) in cfg.compare.paper_scales
    for tau1, tau2 in cfg.sweep.windows:
        CADS(tau1, tau2, cfg.paper.s, cfg.paper.psi)
    assert cfg.diversity_k == 5  # claims.yaml tests recall_k5, coverage_k5, precision_k5
    for n in (cfg.compare.num_samples, cfg.sweep.num_samples):
        assert n >= (cfg.diversity_k + 1) * 10  # conditional PRDC needs > k rows of every class


def test_cpu_profile_fits_the_sample_call_budget():
    """docs/decisions.md, "CPU budgets": <= ~350k sample-calls (guidance > 1 costs two network calls a step)."""
    cfg = load_config(CADSConfig, paper="cads", overrides=["profile=cpu"], root=REPO)
    cp, sw, nfe = cfg.compare, cfg.sweep, cfg.sampler.nfe
    cost = lambda w: 1 if w == 1.0 else 2  # noqa: E731
    per_sample = nfe * (2 * sum(cost(w) for w in cp.guidance_scales) + 2 * len(cp.dynamic_cfg_scales)
                        + sum(cost(w) for w in cp.paper_scales))
    total = per_sample * cp.num_samples * len(cp.seeds) \
        + len(sw.windows) * len(sw.s) * len(sw.seeds) * sw.num_samples * nfe * cost(sw.guidance_scale)
    assert total == 318_000 and total <= 350_000  # the arithmetic in params.yaml


def fake_sets(effect, seeds=(1, 2, 3)):
    """Result sets as evaluate.py writes them: CADS more diverse than CFG and guidance annealing by `effect`."""
    key = lambda m: f"{m}[mnist-classifier]"  # noqa: E731
    out = []
    for seed in seeds:
        for name, w, bump in (("cfg", 1.0, 0.0), ("cfg", 8.0, 0.0), ("cads", 1.0, 0.0), ("cads", 8.0, effect),
                              ("dyncfg", 8.0, 0.0), ("cads_paper", 8.0, 0.0)):
            noise = 0.001 * seed
            out.append({"stage": "compare", "name": name, "guidance": w, "seed": seed,
                        key("recall_k5"): 0.4 + bump + noise, key("coverage_k5"): 0.3 + bump + noise,
                        key("pairwise_dist"): 1.5 + bump, key("precision_k5"): 0.97 - bump / 10,
                        key("class_acc"): 1.0 - bump / 10, key("fid"): 2.0 - bump + noise})
    return out, key


def test_claims_read_the_rows_evaluate_writes():
    claims = load_claims(REPO / "papers/cads/claims.yaml")
    sets, key = fake_sets(0.2)
    verdicts = {v.id: v for v in evaluate_claims(claims, claim_rows(sets, key, 5, 8.0))}
    for vid in ("cads-raises-recall-vs-cfg", "cads-raises-coverage-vs-cfg", "cads-raises-pairwise-distance-vs-cfg",
                "cads-keeps-precision-vs-cfg", "cads-keeps-class-accuracy-vs-cfg", "cads-lowers-fid-vs-cfg",
                "cads-raises-recall-vs-dynamic-cfg", "cads-raises-coverage-vs-dynamic-cfg",
                "cads-raises-pairwise-distance-vs-dynamic-cfg", "cads-keeps-precision-vs-dynamic-cfg"):
        assert verdicts[vid].verdict == "reproduced" and verdicts[vid].n_units == 3, vid
    assert verdicts["cads-raises-recall-vs-cfg"].effect == pytest.approx(0.2)
    assert verdicts["cads-keeps-precision-vs-cfg"].effect == pytest.approx(-0.02)  # method - baseline, margin -0.05
    assert verdicts["cads-paper-settings-raise-recall-vs-cfg"].verdict == "inconclusive"  # zero effect
    worse = {v.id: v for v in evaluate_claims(claims, claim_rows(fake_sets(-0.2)[0], key, 5, 8.0))}
    assert worse["cads-raises-recall-vs-cfg"].verdict == "not reproduced"
