"""The shared sampler's hook points and bookkeeping: per-sample timesteps from hooks (the Time-Shift sampler's
need) agree with the scalar path for every rule; the start hook and its per-sample generators; embedding-level
conditioning; per-step guidance; explicit timesteps; the model-call count."""

import pytest
import torch
from diffusers import UNet2DModel
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, network_roundings, sampler_gain

from common.diffusion import NoiseSchedule, unet_fn
from common.sampling import (
    Hooks,
    SampleNoise,
    SamplingSpec,
    classifier_free_guidance,
    generate_all,
    generate_samples,
    sample,
    timesteps,
)


def _model(x, t, c):  # a smooth deterministic stand-in for a network: depends on x and t
    return 0.5 * x + 1e-3 * t.float().reshape(-1, 1, 1, 1)


class _TensorTimes(Hooks):
    """Returns the nominal times as per-sample tensors (same values): must not change anything."""

    def timestep(self, x, i, t):
        return torch.full((x.shape[0],), t, dtype=torch.long)

    def next_timestep(self, x, i, t, t_next):
        return torch.full((x.shape[0],), t_next, dtype=torch.long)


class _ShiftSecond(Hooks):
    """Lands sample 1 five steps noisier than nominal; sample 0 stays nominal."""

    def next_timestep(self, x, i, t, t_next):
        if t_next < 0:
            return t_next
        return torch.tensor([t_next, t_next + 5])


@pytest.mark.parametrize("method,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0), ("euler", 0.0),
                                        ("dpm_solver_2m", 0.0)])
def test_tensor_timesteps_match_scalar_path(method, eta):
    sched, steps = NoiseSchedule(), timesteps(8)
    a = sample(_model, sched, SampleNoise([1, 2, 3], (1, 4, 4)), None, steps, method, eta, True, Hooks())
    b = sample(_model, sched, SampleNoise([1, 2, 3], (1, 4, 4)), None, steps, method, eta, True, _TensorTimes())
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("method", ["ddim", "ddpm", "euler", "dpm_solver_2m"])
def test_per_sample_shift_changes_only_that_sample(method):
    sched, steps = NoiseSchedule(), timesteps(8)
    a = sample(_model, sched, SampleNoise([1, 2], (1, 4, 4)), None, steps, method, 0.0, True, Hooks())
    b = sample(_model, sched, SampleNoise([1, 2], (1, 4, 4)), None, steps, method, 0.0, True, _ShiftSecond())
    assert torch.allclose(a[0], b[0], atol=1e-6)
    assert not torch.allclose(a[1], b[1], atol=1e-4)


# --------------------------------------------------------------------------- start hook
class _StartDraws(Hooks):
    """Adds a draw from each sample's hook generator to x_T (a start that uses randomness)."""

    def __init__(self):
        self.t = None

    def start(self, x, c, t, gens):
        self.t = t
        return x + torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(x.device)


@pytest.mark.parametrize("method,eta", [("ddim", 1.0), ("ddpm", 0.0)])
def test_start_hook_draws_per_sample_and_leaves_the_samplers_noise_alone(method, eta):
    """The hook's generators are per sample (a sample is the same in any batch) and their own stream: the
    sampler's later draws are the baseline's, so the start's effect is the same as a start handed in by hand."""
    sched, steps = NoiseSchedule(), timesteps(6)
    seeds = [11, 12, 13]
    a = sample(_model, sched, SampleNoise(seeds, (1, 4, 4)), None, steps, method, eta, True, _StartDraws())
    b = torch.cat([sample(_model, sched, SampleNoise(seeds[k:k + 1], (1, 4, 4)), None, steps, method, eta, True,
                          _StartDraws()) for k in range(3)])
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)  # elementwise model: no reassociation, only sqrt/exp paths
    # by hand: x_T + the hook stream's first draw, then the sampler's own draws (x_T's generator continues)
    noise = SampleNoise(seeds, (1, 4, 4))
    x_T = noise()
    extra = torch.stack([torch.randn(1, 4, 4, generator=g) for g in noise.hook_generators()])
    started = iter([x_T + extra])

    def source():  # the started x_T first, then the sampler's own per-sample draws
        x = next(started, None)
        return x if x is not None else noise()

    ref = sample(_model, sched, source, None, steps, method, eta, True)
    torch.testing.assert_close(a, ref, atol=0, rtol=0)
    plain = sample(_model, sched, SampleNoise(seeds, (1, 4, 4)), None, steps, method, eta, True)
    assert (a - plain).abs().max() > 1e-3


def test_start_hook_sees_the_first_timestep_and_no_generators_without_seeds():
    h, x = _StartDraws(), torch.zeros(2, 1, 4, 4)
    seen = []

    class Rec(Hooks):
        def start(self, x, c, t, gens):
            seen.append((t, gens))
            return x

    sample(_model, NoiseSchedule(), lambda: x.clone(), None, [700, 300], "ddim", 0.0, True, Rec())
    assert seen == [(700, None)]  # a bare noise callable has no per-sample seeds
    sample(_model, NoiseSchedule(), SampleNoise([1, 2], (1, 4, 4)), None, [700, 300], "ddim", 0.0, True, h)
    assert h.t == 700


# --------------------------------------------------------------------------- embeddings, guidance, counting
def tiny_conditional_unet(num_classes=4):
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=num_classes).eval()


class _SameEmbedding(Hooks):
    def embedding(self, y, c, i, t):
        return y


class _ZeroEmbedding(Hooks):
    def embedding(self, y, c, i, t):
        return torch.zeros_like(y)


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_embedding_hook_conditions_the_network_on_embeddings(w):
    """Conditioning on the label's own embedding is conditioning on the label (exactly); another embedding is
    another condition; the null branch of guidance keeps the null class's embedding."""
    unet = tiny_conditional_unet()
    spec = SamplingSpec(5, 3, "ddim", guidance_scale=w, seed=0)
    by_label = generate_all(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3)[0]
    by_embedding = generate_all(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, hooks_factory=_SameEmbedding)[0]
    assert torch.equal(by_label, by_embedding)
    zero = generate_all(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, hooks_factory=_ZeroEmbedding)[0]
    assert (zero - by_label).abs().max() > 1e-3
    assert isinstance(unet.class_embedding, torch.nn.Embedding)  # the network is left as it was
    # guidance on embeddings: the null branch gets the null class's row of the table
    fn = unet_fn(unet)
    x, t, c = torch.randn(2, 1, 8, 8), torch.tensor([500, 500]), torch.tensor([0, 2])
    guided = classifier_free_guidance(fn, 3.0, 3)
    torch.testing.assert_close(guided(x, t, fn.embed(c)), guided(x, t, c), atol=0, rtol=0)


def test_embedding_hook_needs_a_model_with_embeddings():
    with pytest.raises(TypeError, match="embed"):
        sample(_model, NoiseSchedule(), SampleNoise([1], (1, 4, 4)), torch.tensor([0]), [500], "ddim",
               hooks=_SameEmbedding())


def test_guidance_hook_and_the_model_call_count():
    """A guidance hook returning w is the float scale (exactly); a per-step scale w(t) is applied per sample;
    the sampler counts network evaluations (guidance: 2 per sample and step) and its NFE."""
    unet = tiny_conditional_unet()
    spec = SamplingSpec(5, 3, "ddpm", guidance_scale=2.5, seed=1)

    class Constant(Hooks):
        def guidance(self, w, t):
            return w

    class Ramp(Hooks):
        def guidance(self, w, t):
            return w * t.double() / 999

    plain = generate_samples(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, batch_size=2)
    hooked = generate_samples(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, batch_size=2,
                              hooks_factory=Constant)
    assert torch.equal(plain.images, hooked.images)
    assert (plain.model_calls, plain.nfe, hooked.model_calls) == (5 * 3 * 2, 3, 5 * 3 * 2)
    ramp = generate_samples(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, hooks_factory=Ramp)
    assert (ramp.images - plain.images).abs().max() > 1e-3
    one = generate_samples(unet_fn(unet), NoiseSchedule(), SamplingSpec(5, 3, "ddim", seed=1), (1, 8, 8), 3)
    assert (one.model_calls, one.nfe) == (5 * 3, 3)
    uncond = generate_samples(_model, NoiseSchedule(), SamplingSpec(4, 2, "ddim", guidance_scale=3.0), (1, 4, 4), 0)
    assert (uncond.model_calls, uncond.nfe) == (4 * 2, 2)  # an unconditional model has no guidance


def test_explicit_timesteps():
    seen = []

    def rec(x, t, c):
        seen.append(int(t[0]))
        return _model(x, t, c)

    spec = SamplingSpec(2, 3, "dpm_solver_2m", timesteps=[900, 420, 17])
    assert spec.steps(1000) == [900, 420, 17] and spec.timesteps == (900, 420, 17)
    generate_all(rec, NoiseSchedule(), spec, (1, 4, 4), 0)
    assert seen == [900, 420, 17]
    assert SamplingSpec(2, 4, spacing="leading").steps(1000) == timesteps(4, 1000, "leading")
    for bad in ([900, 900, 17], [17, 420, 900], [900, 420]):
        with pytest.raises(ValueError, match="timesteps"):
            SamplingSpec(2, 3, timesteps=bad)
    with pytest.raises(ValueError, match="T = 500"):
        SamplingSpec(2, 3, timesteps=[900, 420, 17]).steps(500)
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplingSpec(2, 3, "heun")


def test_generate_with_hooks_does_not_depend_on_batch_size():
    """Start draws, embeddings and per-step guidance together, batches of 5 and of 2: the same samples up to float
    reassociation inside the UNet (3 calls, guidance w <= 2 (gain <= 3), x0 at t = 999)."""
    unet = tiny_conditional_unet()

    class All(_StartDraws):
        def embedding(self, y, c, i, t):
            return 0.9 * y

        def guidance(self, w, t):
            return w * (1 - t.double() / 999)

    spec = SamplingSpec(5, 3, "ddim", 0.5, guidance_scale=2.0, seed=4)
    a = generate_all(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, batch_size=5, hooks_factory=All)[0]
    b = generate_all(unet_fn(unet), NoiseSchedule(), spec, (1, 8, 8), 3, batch_size=2, hooks_factory=All)[0]
    tol = fp32_tolerance(scale=1.0, steps=spec.nfe * network_roundings(unet),
                         amplification=3.0 * sampler_gain(NoiseSchedule(), 999))
    torch.testing.assert_close(a, b, atol=tol, rtol=0)
    other = generate_all(unet_fn(unet), NoiseSchedule(), SamplingSpec(5, 3, "ddim", 0.5, guidance_scale=2.0, seed=5),
                         (1, 8, 8), 3, hooks_factory=All)[0]
    assert (other - a).abs().flatten(1).amax(1).min() > NEGATIVE_CONTROL * tol
