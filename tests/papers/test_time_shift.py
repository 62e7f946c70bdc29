"""Time-Shift sampler (Li et al., ICLR 2024): the selection rule against hand-computed values."""

import numpy as np
import pytest
import torch

from common.diffusion import NoiseSchedule
from common.sampling import Hooks, SampleNoise, ddim_step, sample, timesteps
from papers.time_shift.method import TimeShift, sample_variance, shifted_timestep

SCHEDULE = NoiseSchedule()  # linear betas 1e-4..0.02, T = 1000
NOISE_VAR = 1 - SCHEDULE.alphas_cumprod


def with_variance(values, shape=(1, 16, 16), seed=0):
    """Tensors [N, *shape] whose unbiased per-sample variance is exactly `values`."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((len(values), int(np.prod(shape))), generator=g, dtype=torch.float64)
    z = (z - z.mean(1, keepdim=True)) / z.std(1, keepdim=True)
    return (z * torch.tensor(values, dtype=torch.float64).sqrt()[:, None]).reshape(len(values), *shape)


def test_forward_variances_match_the_notes():
    """Reference table derived here: 1 - ab_tau for tau = 495..505 (linear betas 1e-4..0.02, T = 1000)."""
    published = [.91819, .91900, .91981, .92062, .92141, .92220, .92299, .92377, .92454, .92530, .92606]
    assert NOISE_VAR[495:506].numpy() == pytest.approx(published, abs=6e-6)


@pytest.mark.parametrize("var, expected", [(0.900, 495), (0.920, 497), (0.925, 504), (0.93, 505), (0.99, 505),
                                           (0.92220, 500)])
def test_selection_reference_table(var, expected):
    """Derived here: next step 500, window 10 (half-width 5) -> the tau of the table above nearest to var."""
    x = with_variance([var])
    assert sample_variance(x).item() == pytest.approx(var, rel=1e-9)
    assert shifted_timestep(sample_variance(x), 500, 10, 300, NOISE_VAR).tolist() == [expected]


def brute_force(var, t_next, window, cutoff):
    """The rule written as plain loops: nearest 1 - ab_tau over the clipped window, if t_next > cutoff."""
    if t_next <= cutoff:
        return t_next
    h = window // 2
    cands = [tau for tau in range(t_next - h, t_next + h + 1) if 0 <= tau < len(NOISE_VAR)]
    return min(cands, key=lambda tau: (var - float(NOISE_VAR[tau])) ** 2)


@pytest.mark.parametrize("t_next, window, cutoff", [(500, 80, 300), (20, 80, 0), (995, 40, 300), (250, 40, 300),
                                                    (700, 2, 100), (1, 10, 0)])
def test_selection_matches_brute_force_per_sample(t_next, window, cutoff):
    variances = [0.05, 0.3, 0.6, 0.85, 0.95, 0.999, 1.2]
    got = shifted_timestep(sample_variance(with_variance(variances)), t_next, window, cutoff, NOISE_VAR)
    assert got.tolist() == [brute_force(v, t_next, window, cutoff) for v in variances]


def test_hook_never_shifts_first_or_last_step_or_below_cutoff():
    hook = TimeShift(SCHEDULE, window=80, cutoff=300)
    x = with_variance([0.5, 0.99]).float()
    assert hook.next_timestep(x, 0, 999, 888) == 888  # first step
    assert hook.next_timestep(x, 5, 100, -1) == -1  # last step lands on data
    assert hook.next_timestep(x, 3, 400, 250).tolist() == [250, 250]  # below the cutoff
    shifted = hook.next_timestep(x, 2, 700, 600)
    assert shifted.tolist() == [brute_force(0.5, 600, 80, 300), brute_force(0.99, 600, 80, 300)]
    assert shifted[0] < 600 < shifted[1]  # a less noisy sample lands earlier, a noisier one later
    assert [t for t, _ in hook.chosen] == [250, 600]


def _model(x, t, c):
    return 0.7 * x + 1e-3 * t.float().reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_window_of_one_is_the_plain_sampler(method):
    steps = timesteps(10)
    base = sample(_model, SCHEDULE, SampleNoise([1, 2], (1, 8, 8)), None, steps, method, 0.0, True, Hooks())
    ts = sample(_model, SCHEDULE, SampleNoise([1, 2], (1, 8, 8)), None, steps, method, 0.0, True,
                TimeShift(SCHEDULE, window=1, cutoff=0))
    assert torch.allclose(base, ts, atol=1e-6)
    wide = sample(_model, SCHEDULE, SampleNoise([1, 2], (1, 8, 8)), None, steps, method, 0.0, True,
                  TimeShift(SCHEDULE, window=200, cutoff=0))
    assert not torch.allclose(base, wide, atol=1e-3)


def test_a_window_wider_than_the_step_spacing_steps_without_nan():
    """A window reaching past the step spacing can land a step on a noisier time than the current one
    (t_s > t): DDIM's sigma then takes the square root of (1 - ab_t / ab_s) < 0. The official code simply
    steps there (eta = 0: x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) eps); the shared sampler must too, not return NaN."""
    steps = timesteps(50)  # spacing ~20 < half the window
    for method, eta in (("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)):
        hook = TimeShift(SCHEDULE, window=400, cutoff=0)
        out = sample(_model, SCHEDULE, SampleNoise([1, 2], (1, 8, 8)), None, steps, method, eta, True, hook)
        assert torch.isfinite(out).all(), method
        # the case did occur: some step landed noisier than the time the model was queried at
        assert any(bool((t_s > steps[steps.index(t_next) - 1]).any()) for t_next, t_s in hook.chosen), method


def test_ddim_step_to_a_noisier_time_is_the_deterministic_step():
    """t' = 520 > t = 500: s^2 < 0 is taken as 0, i.e. x_t' = sqrt(ab') x0 + sqrt(1 - ab') eps, at any eta."""
    g = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    x = SCHEDULE.q_sample(x0, 500, eps)
    ab = SCHEDULE.alpha_bar(520)
    for eta in (0.0, 1.0):
        got = ddim_step(SCHEDULE, x, eps, x0, 500, 520, eta, z)
        torch.testing.assert_close(got, (ab.sqrt() * x0 + (1 - ab).sqrt() * eps).float(), atol=1e-6, rtol=0)
