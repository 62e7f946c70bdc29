"""Per-sample timesteps from hooks (the Time-Shift sampler's need) agree with the scalar path."""

import pytest
import torch

from common.diffusion import NoiseSchedule
from common.sampling import Hooks, SampleNoise, sample, timesteps


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


@pytest.mark.parametrize("method,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_tensor_timesteps_match_scalar_path(method, eta):
    sched, steps = NoiseSchedule(), timesteps(8)
    a = sample(_model, sched, SampleNoise([1, 2, 3], (1, 4, 4)), None, steps, method, eta, True, Hooks())
    b = sample(_model, sched, SampleNoise([1, 2, 3], (1, 4, 4)), None, steps, method, eta, True, _TensorTimes())
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("method", ["ddim", "ddpm"])
def test_per_sample_shift_changes_only_that_sample(method):
    sched, steps = NoiseSchedule(), timesteps(8)
    a = sample(_model, sched, SampleNoise([1, 2], (1, 4, 4)), None, steps, method, 0.0, True, Hooks())
    b = sample(_model, sched, SampleNoise([1, 2], (1, 4, 4)), None, steps, method, 0.0, True, _ShiftSecond())
    assert torch.allclose(a[0], b[0], atol=1e-6)
    assert not torch.allclose(a[1], b[1], atol=1e-4)
