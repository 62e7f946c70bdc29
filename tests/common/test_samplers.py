"""common/samplers.py: every step rule against the diffusers scheduler of the same name, step for step.

Both sides get the same explicit timesteps and the same model outputs: a fake deterministic model whose
eps depends only on the timestep (a fixed N(0, I) draw per timestep), so the two trajectories see
identical inputs at every step and differ only by their own arithmetic. The states are compared after
every step. diffusers' schedulers: DDIMScheduler (eta 0 and 1, with and without x0 clipping),
DDPMScheduler (ancestral, "fixed_small", custom timesteps), DPMSolverMultistepScheduler (dpmsolver++,
order 2, final sigma 0), EulerDiscreteScheduler (whose state is the VE form x / sqrt(ab)).
"""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, sampler_gain

from common.diffusion import NoiseSchedule
from common.samplers import RULES, step_rule
from common.sampling import Hooks, sample, timesteps

SCHEDULE = NoiseSchedule()
SHAPE = (2, 3, 4, 4)
EXPLICIT = [999, 901, 700, 480, 233, 87, 10]  # irregular, as an optimised schedule is
BETAS = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def fake_outputs(seed=0):
    """eps(x, t) = a fixed draw per timestep t: deterministic, and the same for both sides whatever x is."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(1000, *SHAPE[1:], generator=g)

    def model(x, t, c):
        return table[t.long().cpu()].to(x.dtype)

    return model


class States(Hooks):
    """Records the sampler's state at the start of every step."""

    def __init__(self):
        self.xs = []

    def model_output(self, eps, x, i, t):
        self.xs.append(x.clone())
        return eps


def ours(method, steps, model, draws, eta=0.0, clip=False):
    """Our states after each step (the start of steps 1.. and the output), from x_T = draws[0]."""
    it = iter(draws)
    rec = States()
    with torch.no_grad():
        out = sample(model, SCHEDULE, lambda: next(it).clone(), None, steps, method, eta, clip, rec)
    return rec.xs[1:] + [out]


def reference(sched, model, draws, variance_noise=False, **step_kwargs):
    """diffusers' states after each step on the same timesteps and outputs; with `variance_noise`, step i's
    noise is draws[i + 1] (ours: one draw per step with t' >= 0; zero variance on the last step)."""
    x, xs = draws[0].clone(), []
    for i, t in enumerate(sched.timesteps):
        eps = model(x, torch.full((SHAPE[0],), int(t)), None)
        if variance_noise:
            step_kwargs["variance_noise"] = draws[i + 1] if i + 1 < len(draws) else torch.zeros(SHAPE)
        x = sched.step(eps, t, x, **step_kwargs).prev_sample
        xs.append(x)
    return xs


def check_step_for_step(mine, ref, steps, extra_gain=1.0):
    """Every step: the two sides differ by the roundings of their arithmetic (float64 vs float32 coefficients,
    about three formulas a step), magnified along the trajectory by at most the sampler's gain
    1 / sqrt(ab_{t_0}) (tests/tolerances.py) and, for multistep rules, by their extrapolation weight."""
    assert len(mine) == len(ref) == len(steps)
    tols = []
    for i, (a, b) in enumerate(zip(mine, ref)):
        scale = max(1.0, max(float(r.abs().max()) for r in ref[: i + 1]))
        tol = fp32_tolerance(scale=scale, steps=3 * (i + 1), amplification=sampler_gain(SCHEDULE, steps[0]) * extra_gain)
        torch.testing.assert_close(a, b, atol=tol, rtol=0, msg=lambda m, i=i: f"step {i} (t = {steps[i]}): {m}")
        tols.append(tol)
    return tols


def assert_detects_a_step_mixup(method, steps, model, draws, tol, **kw):
    """The check can fail: the model output of the next timestep at every step (a schedule off by one) moves
    the result by far more than the tolerance."""
    def shifted(x, t, c):
        later = {a: b for a, b in zip(steps, steps[1:] + [0])}
        return model(x, torch.tensor([later[int(v)] for v in t]), c)

    good = ours(method, steps, model, draws, **kw)[-1]
    bad = ours(method, steps, shifted, draws, **kw)[-1]
    assert (good - bad).abs().max() > NEGATIVE_CONTROL * tol


def draws_for(n_steps, seed=1):
    """x_T, then one draw per step with t' >= 0, from one generator (as diffusers' DDPMScheduler draws them)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g) for _ in range(n_steps)]


# --------------------------------------------------------------------------- DDIM
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_step_for_step(eta, clip):
    """DDIMScheduler steps from t to t - T // N: on the leading grid with N | T that is the next timestep."""
    sched = DDIMScheduler(**BETAS, clip_sample=clip, set_alpha_to_one=True, timestep_spacing="leading")
    sched.set_timesteps(10)
    steps = timesteps(10, 1000, "leading")
    assert sched.timesteps.tolist() == steps
    model, draws = fake_outputs(), draws_for(len(steps))
    mine = ours("ddim", steps, model, draws, eta, clip)
    ref = reference(sched, model, draws, variance_noise=eta > 0, eta=eta, use_clipped_model_output=clip)
    tols = check_step_for_step(mine, ref, steps)
    assert_detects_a_step_mixup("ddim", steps, model, draws, tols[-1], eta=eta, clip=clip)


# --------------------------------------------------------------------------- DDPM
@pytest.mark.parametrize("clip", [False, True])
def test_ddpm_step_for_step(clip):
    """DDPMScheduler with custom timesteps: each step goes to the next timestep of the list, -1 after the last."""
    sched = DDPMScheduler(**BETAS, variance_type="fixed_small", clip_sample=clip)
    sched.set_timesteps(timesteps=EXPLICIT)
    model, draws = fake_outputs(), draws_for(len(EXPLICIT))
    mine = ours("ddpm", EXPLICIT, model, draws, clip=clip)
    # diffusers draws x_T (here) and then one randn per step with t > 0 from its generator; ours draws x_T and then
    # one per step with t' >= 0: the same sequence from the same seed (diffusers' extra last draw comes after)
    g = torch.Generator().manual_seed(1)
    x, ref = torch.randn(SHAPE, generator=g), []
    for t in sched.timesteps:
        x = sched.step(model(x, torch.full((SHAPE[0],), int(t)), None), t, x, generator=g).prev_sample
        ref.append(x)
    tols = check_step_for_step(mine, ref, EXPLICIT)
    assert_detects_a_step_mixup("ddpm", EXPLICIT, model, draws, tols[-1], clip=clip)


# --------------------------------------------------------------------------- DPM-Solver++(2M)
def dpm_extrapolation_gain(steps):
    """Largest weight 1 + 1/r of the second-order term (r = h_prev / h) on this grid."""
    ab = np.array([float(SCHEDULE.alpha_bar(t)) for t in steps])
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))
    h = np.diff(lam)
    return float(max(1 + h[1:] / h[:-1])) if len(h) > 1 else 1.0


@pytest.mark.parametrize("steps", [EXPLICIT, timesteps(10, 1000, "linspace"), timesteps(2)])
def test_dpm_solver_2m_step_for_step(steps):
    sched = DPMSolverMultistepScheduler(**BETAS, solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint",
                                        lower_order_final=True, final_sigmas_type="zero")
    sched.set_timesteps(timesteps=steps)
    model, draws = fake_outputs(), draws_for(1)
    mine = ours("dpm_solver_2m", steps, model, draws)
    ref = reference(sched, model, draws)
    tols = check_step_for_step(mine, ref, steps, dpm_extrapolation_gain(steps))
    assert_detects_a_step_mixup("dpm_solver_2m", steps, model, draws, tols[-1])


def test_dpm_solver_first_order_steps_are_ddim():
    """With two steps (999 -> 0 -> data) both updates are first order, i.e. DDIM (eta = 0)."""
    model, draws = fake_outputs(), draws_for(1)
    a, b = ours("dpm_solver_2m", timesteps(2), model, draws), ours("ddim", timesteps(2), model, draws)
    tol = fp32_tolerance(scale=float(b[-1].abs().max()), steps=6, amplification=sampler_gain(SCHEDULE, 999))
    torch.testing.assert_close(a[-1], b[-1], atol=tol, rtol=0)


# --------------------------------------------------------------------------- Euler
@pytest.mark.parametrize("steps", [EXPLICIT, timesteps(10, 1000, "linspace")])
def test_euler_step_for_step(steps):
    """EulerDiscreteScheduler's state is x / sqrt(ab_t) (its model input x / sqrt(sigma^2 + 1) is our x): compare
    our state divided by sqrt(ab) of the step it reached (ab = 1 at the data end)."""
    sched = EulerDiscreteScheduler(**BETAS)
    sched.set_timesteps(timesteps=steps)
    model, draws = fake_outputs(), draws_for(1)
    mine = ours("euler", steps, model, draws)
    ve = [x / float(SCHEDULE.alpha_bar(t)) ** 0.5 for x, t in zip(mine, steps[1:] + [-1])]
    x = draws[0] / float(SCHEDULE.alpha_bar(steps[0])) ** 0.5
    ref = []
    for t in sched.timesteps:
        eps = model(sched.scale_model_input(x, t), t.reshape(1).expand(SHAPE[0]), None)
        x = sched.step(eps, t, x).prev_sample
        ref.append(x)
    tols = check_step_for_step(ve, ref, steps)
    assert_detects_a_step_mixup("euler", steps, model, draws, tols[-1])
    # mathematically the same map as DDIM at eta = 0
    torch.testing.assert_close(mine[-1], ours("ddim", steps, model, draws)[-1], atol=tols[-1], rtol=0)


# --------------------------------------------------------------------------- the registry
def test_registry():
    assert sorted(RULES) == ["ddim", "ddpm", "dpm_solver_2m", "euler"]
    assert step_rule("ddim", 0.5).eta == 0.5 and step_rule("ddim", 0.5).stochastic
    assert not step_rule("ddim").stochastic and step_rule("ddpm").stochastic
    with pytest.raises(ValueError, match="unknown sampler"):
        step_rule("heun")
    with pytest.raises(ValueError, match="eta"):
        step_rule("euler", 1.0)
    a, b = step_rule("dpm_solver_2m"), step_rule("dpm_solver_2m")
    assert a is not b  # a fresh history per trajectory
