"""common/diffusion.py and common/sampling.py against diffusers' schedulers on the same tiny random UNet and the same noise.

- DDIM (eta = 0 and 1) and ancestral DDPM, with and without x0 clipping, every timestep spacing;
- the ADM respacing (`linspace`) checked against diffusers' DDIMScheduler run on the respaced chain
  (what ADM's `space_timesteps` does), because diffusers' own DDIMScheduler steps from t to
  t - T // N rather than to the next timestep of its list (they differ whenever N does not divide T,
  and always for `linspace`);
- forward process / conversions, the loss, guidance, per-sample seeding and the hook points.
"""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, guidance_gain, network_roundings, sampler_gain

from common.diffusion import NoiseSchedule, denoising_loss, unet_fn
from common.sampling import (
    Hooks,
    SampleNoise,
    SamplingSpec,
    balanced_labels,
    classifier_free_guidance,
    generate,
    generate_all,
    sample,
    sample_seeds,
    timesteps,
)

SHAPE = (2, 2, 8, 8)  # batch 2, 2 channels, 8x8


def assert_matches_reference(ours, ref, steps):
    """Ours vs diffusers on the same batch: the same network, but the scheduler arithmetic rounds differently
    (float64 vs float32 coefficients). Each step evaluates three formulas (x0, eps re-derived, the update), so
    the two differ by three roundings of the samples' scale per step. The later steps' x0 predictions magnify
    that, by at most 1 / sqrt(ab) of the first step. Without x0 clipping an untrained UNet drives samples to
    |x| ~ 1e2-1e3. The network mixes all pixels, so the scale is that of the whole sample, not of each element
    (an rtol would fail on the small elements)."""
    tol = fp32_tolerance(scale=max(1.0, float(ref.abs().max())), steps=3 * len(steps),
                         amplification=sampler_gain(NoiseSchedule(), steps[0]))
    torch.testing.assert_close(ours, ref, atol=tol, rtol=0)


def tiny_unet(seed=0, out_channels=2, num_class_embeds=None):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=2, out_channels=out_channels, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                       num_class_embeds=num_class_embeds).eval()


@pytest.fixture(scope="module")
def model():
    return unet_fn(tiny_unet())


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule()


def x_T(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def fixed_noise(x):
    """A noise callable that returns x_T (no further draws allowed: deterministic samplers)."""
    calls = []

    def fn():
        assert not calls, "a deterministic sampler must draw only x_T"
        calls.append(1)
        return x.clone()

    return fn


def diffusers_loop(sched, model_fn, x, timestep_map=None, **step_kwargs):
    x = x.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            t_model = int(t) if timestep_map is None else timestep_map[int(t)]
            eps = model_fn(x, torch.full((x.shape[0],), t_model, dtype=torch.long), None)
            x = sched.step(eps, t, x, **step_kwargs).prev_sample
    return x


# --------------------------------------------------------------------------- schedule and timesteps
def test_schedule_matches_diffusers():
    for kind in ("linear", "squaredcos_cap_v2"):
        s = NoiseSchedule(beta_schedule=kind)
        ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=kind)
        torch.testing.assert_close(s.alphas_cumprod.float(), ref.alphas_cumprod)
        assert s.alphas_cumprod.dtype == torch.float64
    s = NoiseSchedule()
    assert float(s.alpha_bar(-1)) == 1.0
    assert float(s.alpha_bar(0)) == pytest.approx(1 - 1e-4)
    assert float(s.alpha_bar(999)) == pytest.approx(4.0358e-5, rel=1e-3)  # DDPM's linear schedule
    torch.testing.assert_close(s.alpha_bar(torch.tensor([-1, 3])), torch.stack([torch.ones((), dtype=torch.float64),
                                                                                s.alphas_cumprod[3]]))


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("n", [1, 5, 7, 10, 20, 50, 999])
def test_timesteps_match_diffusers(spacing, n):
    ours = timesteps(n, 1000, spacing)
    for cls in (DDIMScheduler, DDPMScheduler):
        sched = cls(num_train_timesteps=1000, timestep_spacing=spacing)
        sched.set_timesteps(n)
        assert ours == sched.timesteps.tolist(), cls.__name__
    assert len(ours) == n and all(a > b for a, b in zip(ours, ours[1:]))


def test_timesteps_adm_respacing():
    # ADM's space_timesteps(1000, "10"): round(i * 999 / 9) -> 0, 111, ..., 999
    assert timesteps(10, 1000, "linspace") == list(range(999, -1, -111))
    assert timesteps(20, 1000, "linspace")[:3] == [999, 946, 894]
    with pytest.raises(ValueError, match="spacing"):
        timesteps(10, 1000, "log")


# --------------------------------------------------------------------------- DDIM vs diffusers
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_matches_diffusers(model, schedule, spacing, clip):
    n = 5  # divides T, so diffusers' t - T // N is also the next timestep of its list
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip, set_alpha_to_one=True,
                          timestep_spacing=spacing, prediction_type="epsilon")
    sched.set_timesteps(n)
    steps = timesteps(n, 1000, spacing)
    assert steps == sched.timesteps.tolist()
    xT = x_T()
    with torch.no_grad():
        ours = sample(model, schedule, fixed_noise(xT), None, steps, method="ddim", eta=0.0, clip_x0=clip)
    # ADM (and ours) re-derive eps from the clipped x0; diffusers does so with use_clipped_model_output
    ref = diffusers_loop(sched, model, xT, eta=0.0, use_clipped_model_output=clip)
    assert ours.shape == SHAPE and ours.dtype == torch.float32
    assert_matches_reference(ours, ref, steps)
    if clip:
        assert not torch.allclose(ref, diffusers_loop(sched, model, xT, eta=0.0), atol=1e-3)  # it matters


def respaced_ddim(steps, clip):
    """diffusers' DDIMScheduler on ADM's respaced chain: betas_i = 1 - ab(t_i) / ab(t_{i-1}) over kept t_i."""
    ab = NoiseSchedule().alphas_cumprod.numpy()
    kept = sorted(steps)
    ab_kept = ab[kept]
    betas = 1 - ab_kept / np.concatenate([[1.0], ab_kept[:-1]])
    sched = DDIMScheduler(num_train_timesteps=len(kept), trained_betas=betas.tolist(), clip_sample=clip,
                          set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0,
                          prediction_type="epsilon")
    sched.set_timesteps(len(kept))
    return sched, dict(enumerate(kept))


@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_ddim_matches_diffusers_on_respaced_chain(model, schedule, spacing, clip):
    steps = timesteps(7, 1000, spacing)  # 7 does not divide 1000
    sched, tmap = respaced_ddim(steps, clip)
    xT = x_T(1)
    with torch.no_grad():
        ours = sample(model, schedule, fixed_noise(xT), None, steps, method="ddim", eta=0.0, clip_x0=clip)
    ref = diffusers_loop(sched, model, xT, timestep_map=tmap, eta=0.0, use_clipped_model_output=clip)
    assert_matches_reference(ours, ref, steps)


@pytest.mark.parametrize("clip", [True, False])
def test_ddim_eta1_matches_diffusers(model, schedule, clip):
    n = 5
    sched = DDIMScheduler(num_train_timesteps=1000, clip_sample=clip, set_alpha_to_one=True,
                          timestep_spacing="leading")
    sched.set_timesteps(n)
    g = torch.Generator().manual_seed(3)
    draws = [torch.randn(SHAPE, generator=g) for _ in range(n)]  # x_T, then one per step with t' >= 0
    it = iter(draws)
    with torch.no_grad():
        ours = sample(model, schedule, lambda: next(it).clone(), None, timesteps(n, 1000, "leading"),
                      method="ddim", eta=1.0, clip_x0=clip)
    assert next(it, None) is None  # exactly n draws
    x = draws[0].clone()
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            eps = model(x, torch.full((SHAPE[0],), int(t)), None)
            z = draws[i + 1] if i + 1 < n else torch.zeros(SHAPE)  # the last step has zero variance
            x = sched.step(eps, t, x, eta=1.0, use_clipped_model_output=clip, variance_noise=z).prev_sample
    assert_matches_reference(ours, x, timesteps(n, 1000, "leading"))


# --------------------------------------------------------------------------- DDPM vs diffusers
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
def test_ddpm_matches_diffusers(model, schedule, spacing, clip):
    n = 7
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", variance_type="fixed_small",
                          clip_sample=clip, timestep_spacing=spacing, prediction_type="epsilon")
    sched.set_timesteps(n)
    steps = timesteps(n, 1000, spacing)
    assert steps == sched.timesteps.tolist()
    # diffusers draws x_T (we do it here) and then one randn per step with t > 0 from the generator;
    # ours draws x_T and then one per step with t' >= 0: the same sequence from the same seed.
    g_ours = torch.Generator().manual_seed(7)
    with torch.no_grad():
        ours = sample(model, schedule, lambda: torch.randn(SHAPE, generator=g_ours), None, steps,
                      method="ddpm", clip_x0=clip)
    g_ref = torch.Generator().manual_seed(7)
    xT = torch.randn(SHAPE, generator=g_ref)
    ref = diffusers_loop(sched, model, xT, generator=g_ref)
    assert_matches_reference(ours, ref, steps)
    # the noise matters: another seed gives another sample
    g_other = torch.Generator().manual_seed(8)
    with torch.no_grad():
        other = sample(model, schedule, lambda: torch.randn(SHAPE, generator=g_other), None, steps,
                       method="ddpm", clip_x0=clip)
    assert (other - ours).abs().max() > 0.1


# --------------------------------------------------------------------------- forward process, loss, guidance
def test_forward_process_and_conversions():
    s = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 500, 999])
    x_t = s.q_sample(x0, t, eps)
    ab = s.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, ab.sqrt() * x0 + (1 - ab).sqrt() * eps)
    torch.testing.assert_close(s.predict_x0(x_t, eps, t), x0)
    torch.testing.assert_close(s.predict_eps(x_t, x0, t), eps)
    # a scalar timestep broadcasts
    torch.testing.assert_close(s.predict_x0(s.q_sample(x0, 250, eps), eps, 250), x0)
    # the marginal variance is preserved for unit-variance data
    big = torch.randn(200000, dtype=torch.float64, generator=g)
    assert float(s.q_sample(big, 600, torch.randn(200000, dtype=torch.float64, generator=g)).std()) == \
        pytest.approx(1.0, abs=0.01)


def test_denoising_loss(schedule):
    x0 = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = torch.tensor([0, 1, 2, 1])
    seen = {}

    def rec(x, t, c):
        seen.update(x=x.clone(), t=t.clone(), c=None if c is None else c.clone())
        return 0.5 * x

    def perturb(eps, g):  # a noise_input hook that draws (DDPM-IP's kind)
        return eps + 0.1 * torch.randn(eps.shape, generator=g)

    loss = denoising_loss(rec, schedule, x0, cond, torch.Generator().manual_seed(1), noise_input=perturb)
    again = denoising_loss(rec, schedule, x0, cond, torch.Generator().manual_seed(1), noise_input=perturb)
    other = denoising_loss(rec, schedule, x0, cond, torch.Generator().manual_seed(2), noise_input=perturb)
    assert float(loss) == float(again) and float(loss) != float(other)

    # replay the generator: t, eps, then the hook's draw; the hook changes the input, not the target
    g = torch.Generator().manual_seed(2)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    xi = torch.randn(x0.shape, generator=g)
    torch.testing.assert_close(seen["t"], t)
    x_t = schedule.q_sample(x0, t, eps + 0.1 * xi)
    torch.testing.assert_close(seen["x"], x_t)
    torch.testing.assert_close(other, torch.mean((eps - 0.5 * x_t) ** 2))
    torch.testing.assert_close(seen["c"], cond)

    # condition dropout replaces labels by the null class
    denoising_loss(rec, schedule, x0, cond, torch.Generator().manual_seed(0), cond_dropout=1.0, null_class=3)
    assert seen["c"].tolist() == [3, 3, 3, 3]
    denoising_loss(rec, schedule, x0, cond, torch.Generator().manual_seed(0), cond_dropout=0.0, null_class=3)
    assert seen["c"].tolist() == cond.tolist()


def test_denoising_loss_values_are_unchanged(schedule):
    """Golden values of the loss before the input perturbation moved out into a hook (the values of
    `denoising_loss(..., input_perturbation=gamma)`, the former signature): the plain loss and the one
    with a drawing hook keep their random stream (t, eps, the hook's xi, then the condition dropout)."""
    x0 = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    cond = torch.tensor([3, 7])

    def model(x, t, c):
        return 0.5 * x + t.float().reshape(-1, 1, 1, 1) / 1000 + c.float().reshape(-1, 1, 1, 1) / 10

    def perturb(eps, g):
        return eps + 0.1 * torch.randn(eps.shape, generator=g).to(eps.device)

    plain = denoising_loss(model, schedule, x0, cond, torch.Generator().manual_seed(5), 0.5, 10)
    ip = denoising_loss(model, schedule, x0, cond, torch.Generator().manual_seed(5), 0.5, 10, noise_input=perturb)
    assert float(plain) == float.fromhex("0x1.90c0f00000000p+0")  # 1.565443992614746
    assert float(ip) == float.fromhex("0x1.65c48a0000000p+1")  # 2.795060396194458


def test_classifier_free_guidance():
    def fake(x, t, c):  # depends on the condition in a way we can check
        return x * (c.float() + 1).reshape(-1, 1, 1, 1) + t.float().reshape(-1, 1, 1, 1) / 1000

    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 500, 999])
    c = torch.tensor([0, 2, 1])
    null = 4
    torch.testing.assert_close(classifier_free_guidance(fake, 1.0, null)(x, t, c), fake(x, t, c))
    w = 2.5
    e_c, e_u = fake(x, t, c), fake(x, t, torch.full_like(c, null))
    torch.testing.assert_close(classifier_free_guidance(fake, w, null)(x, t, c), e_u + w * (e_c - e_u))
    torch.testing.assert_close(classifier_free_guidance(fake, 0.0, null)(x, t, c), e_u)


def test_unet_fn_learned_sigma():
    unet = tiny_unet(out_channels=4)  # eps and variance channels, as ADM with learn_sigma
    x = torch.randn(2, 2, 8, 8)
    t = torch.tensor([5, 900])
    with torch.no_grad():
        out = unet_fn(unet)(x, t, None)
        full = unet(x, t).sample
    assert out.shape == (2, 2, 8, 8)
    torch.testing.assert_close(out, full[:, :2])


# --------------------------------------------------------------------------- per-sample seeding
def test_sample_noise_is_per_sample():
    seeds = sample_seeds(0, 5)
    assert len(set(seeds)) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seeds(0, 5) == seeds and sample_seeds(1, 5) != seeds
    assert sample_seeds(0, 9)[:5] == seeds  # more samples keep the first ones
    a = SampleNoise(seeds, (2, 3))
    b = SampleNoise(seeds[3:], (2, 3))
    first_a, first_b = a(), b()
    torch.testing.assert_close(first_a[3:], first_b)
    second_a = a()
    assert not torch.allclose(second_a, first_a)
    torch.testing.assert_close(second_a[3:], b())


@pytest.mark.parametrize("method", ["ddpm", "ddim"])
def test_generate_independent_of_batch_size(method):
    unet = tiny_unet(num_class_embeds=4)  # 3 classes + the null class
    fn = unet_fn(unet)
    s = NoiseSchedule()
    spec = SamplingSpec(num_samples=7, nfe=3, method=method, eta=0.5 if method == "ddim" else 0.0,
                        guidance_scale=2.0, seed=0)
    x7, y7 = generate_all(fn, s, spec, SHAPE[1:], num_classes=3, batch_size=7)
    x3, y3 = generate_all(fn, s, spec, SHAPE[1:], num_classes=3, batch_size=3)
    assert x7.shape == (7, *SHAPE[1:])
    assert y7.tolist() == balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert torch.equal(generate_all(fn, s, spec, SHAPE[1:], num_classes=3, batch_size=7)[0], x7)  # same batch: exact
    # other batch sizes round differently inside the UNet: samples in [-1, 1], 3 network calls, each magnified
    # by guidance and by the x0 prediction at t = 999
    tol = fp32_tolerance(scale=1.0, steps=spec.nfe * network_roundings(unet),
                         amplification=guidance_gain(spec.guidance_scale) * sampler_gain(s, timesteps(spec.nfe)[0]))
    torch.testing.assert_close(x3, x7, rtol=0, atol=tol)
    assert torch.equal(y3, y7)
    # a shard of indices (one process's share) gives the same samples
    xs, ys = generate_all(fn, s, spec, SHAPE[1:], num_classes=3, batch_size=2, indices=[5, 1, 6])
    torch.testing.assert_close(xs, x7[[5, 1, 6]], rtol=0, atol=tol)
    assert ys.tolist() == y7[[5, 1, 6]].tolist()
    # batches come out in order, with at most batch_size samples each
    sizes = [len(x) for x, _ in generate(fn, s, spec, SHAPE[1:], num_classes=3, batch_size=3)]
    assert sizes == [3, 3, 1]
    # another seed: other samples, every one of them far outside the tolerance (so a per-batch seed would fail)
    x_other, _ = generate_all(fn, s, SamplingSpec(7, 3, method, seed=1, guidance_scale=2.0), SHAPE[1:], 3)
    assert (x_other - x7).abs().flatten(1).amax(1).min() > NEGATIVE_CONTROL * tol


# --------------------------------------------------------------------------- hooks
class Recorder(Hooks):
    def __init__(self):
        self.calls = []

    def timestep(self, x, i, t):
        self.calls.append(("timestep", i, t))
        return t

    def condition(self, c, i, t):
        self.calls.append(("condition", i, t))
        return c

    def model_output(self, eps, x, i, t):
        self.calls.append(("model_output", i, t))
        return eps

    def x0(self, x0, x, i, t):
        self.calls.append(("x0", i, t))
        return x0


def test_identity_hooks_and_call_order(model, schedule):
    steps = timesteps(4, 1000, "linspace")
    xT = x_T()
    rec = Recorder()
    with torch.no_grad():
        plain = sample(model, schedule, fixed_noise(xT), None, steps)
        hooked = sample(model, schedule, fixed_noise(xT), None, steps, hooks=rec)
    torch.testing.assert_close(hooked, plain, rtol=0, atol=0)
    expected = [(name, i, t) for i, t in enumerate(steps) for name in ("timestep", "condition", "model_output", "x0")]
    assert rec.calls == expected


def test_model_output_hook(model, schedule):
    class ZeroEps(Hooks):
        def model_output(self, eps, x, i, t):
            return eps * 0

    steps = timesteps(5, 1000, "linspace")
    xT = x_T()
    with torch.no_grad():
        plain = sample(model, schedule, fixed_noise(xT), None, steps, clip_x0=False)
        zero = sample(model, schedule, fixed_noise(xT), None, steps, clip_x0=False, hooks=ZeroEps())
    assert (plain - zero).abs().max() > 0.1
    # with eps = 0 each DDIM step multiplies x by sqrt(ab_prev / ab_t): x_0 = x_T / sqrt(ab_{t_first})
    ab_first = float(schedule.alpha_bar(steps[0]))
    torch.testing.assert_close(zero, xT / ab_first ** 0.5, rtol=1e-5, atol=0)


def test_timestep_hook_remaps_model_input(schedule):
    seen = []

    def fake(x, t, c):
        seen.append(t.tolist())
        return torch.zeros_like(x)

    class Half(Hooks):
        def timestep(self, x, i, t):
            return t // 2

    steps = timesteps(4, 1000, "linspace")
    sample(fake, schedule, fixed_noise(x_T()), None, steps, hooks=Half())
    assert seen == [[t // 2] * SHAPE[0] for t in steps]


def test_condition_hook(model, schedule):
    seen = []

    def fake(x, t, c):
        seen.append(c.tolist())
        return torch.zeros_like(x)

    class Drop(Hooks):  # replace the condition by the null class on the last step only
        def condition(self, c, i, t):
            return torch.full_like(c, 9) if i == 2 else c

    sample(fake, schedule, fixed_noise(x_T()), torch.tensor([1, 2]), timesteps(3, 1000, "linspace"), hooks=Drop())
    assert seen == [[1, 2], [1, 2], [9, 9]]


def test_x0_hook_overrides_last_step(model, schedule):
    class ZeroLast(Hooks):
        def x0(self, x0, x, i, t):
            return torch.zeros_like(x0) if t == 0 else x0

    with torch.no_grad():
        out = sample(model, schedule, fixed_noise(x_T()), None, timesteps(4, 1000, "linspace"), hooks=ZeroLast())
    assert torch.count_nonzero(out) == 0  # the last DDIM step returns x0 itself
