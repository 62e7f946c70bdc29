"""Imagine Flash (Kohler et al., 2024; no official code): reference checks against closed forms, the student at
initialisation, the noise correction formula, the tiny pipeline end to end and the full profile (an SDXL-scale
UNet2DConditionModel standing in for Emu, which is not public).

Where the numbers come from: there is no official code to run, so every reference is a closed form derived here.
Data N(0, s^2 I) have the exact x0-predictor x0*(x_t) = alpha_t s^2 x_t / (alpha_t^2 s^2 + sigma_t^2); with it as
both teacher and student, one DDIM step t -> t' is the linear map x -> m x with
m = (alpha_t alpha_t' s^2 + sigma_t sigma_t') / (alpha_t^2 s^2 + sigma_t^2), so the backward-trajectory inputs from
x_T ~ N(0, I) have variance prod m^2. Data {-1, +1}^d (fair coin per pixel) have x0*(x_t) = tanh(alpha_t x_t / sigma_t^2).
The SDXL parameter count 2,567,463,684 is diffusers' UNet2DConditionModel with SDXL-base 1.0's unet/config.json.
"""

import json
from pathlib import Path

import pytest
import torch

from common.claims import load_claims
from common.config import load_config
from common.diffusion import NoiseSchedule
from common.teacher_pairs import Teacher
from papers.imagine_flash import emu_scale, method
from papers.imagine_flash.config import ImagineFlashConfig

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = NoiseSchedule(1000, "linear", 1e-4, 0.02)  # the shared teacher's schedule


class _Net(torch.nn.Module):
    """A stand-in network for `Teacher`: its model_fn is replaced by a closed form."""


def exact_model(x0_star) -> Teacher:
    """A Teacher whose eps is derived from the exact x0-predictor x0_star(x_t, alpha, sigma)."""
    m = Teacher(_Net(), SCHEDULE, num_classes=0)

    def eps(x, t, c):
        a, s = method.alpha_sigma(SCHEDULE, t, x)
        return (x - a * x0_star(x, a, s)) / s

    m.model_fn = eps
    return m


def gaussian(s2: float):
    return exact_model(lambda x, a, s: a * s2 * x / (a**2 * s2 + s**2))


def coins():
    return exact_model(lambda x, a, s: torch.tanh(a * x / s**2))


def ddim_gain(t: int, t_next: int, s2: float) -> float:
    ab, ab2 = float(SCHEDULE.alpha_bar(t)), float(SCHEDULE.alpha_bar(t_next))
    a, s, a2, sg2 = ab**0.5, (1 - ab) ** 0.5, ab2**0.5, (1 - ab2) ** 0.5
    return (a * a2 * s2 + s * sg2) / (a**2 * s2 + s**2)


# --------------------------------------------------------------------------- backward distillation
@pytest.mark.parametrize("k", [2, 3])
def test_backward_inputs_have_the_closed_form_variance(k):
    """x_hat_{t_i} of the exact Gaussian student: variance prod_j m_j^2 (s = 0.2: clipping at 1 is 5 sd away)."""
    s2, ts = 0.04, method.student_timesteps(k, SCHEDULE.T)
    x_T = torch.randn(20000, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    model = gaussian(s2)
    for i in range(1, k):
        x = method.backward_input(model, x_T, None, ts, i)
        want = 1.0
        for j in range(i):
            want *= ddim_gain(ts[j], ts[j + 1], s2) ** 2
        assert float(x.var()) == pytest.approx(want, rel=0.03)
        forward_var = float(SCHEDULE.alpha_bar(ts[i])) * s2 + 1 - float(SCHEDULE.alpha_bar(ts[i]))
        assert want < forward_var  # Cauchy-Schwarz: one DDIM step shrinks below the forward marginal


def test_backward_input_is_the_students_own_no_grad_trajectory():
    torch.manual_seed(0)
    model = gaussian(0.04)
    ts = method.student_timesteps(3, SCHEDULE.T)
    assert ts == [999, 666, 332]
    x_T = torch.randn(4, 1, 2, 2, requires_grad=True)
    assert torch.equal(method.backward_input(model, x_T, None, ts, 0), x_T)
    x1 = method.backward_input(model, x_T, None, ts, 1)
    x0, eps = model.predict(x_T.detach(), ts[0], None, clip=True)
    assert torch.allclose(x1, method.ddim_step(SCHEDULE, x0, eps, ts[1]))
    assert not method.backward_input(model, x_T, None, ts, 2).requires_grad


# --------------------------------------------------------------------------- shifted reconstruction loss
def test_srl_is_zero_for_a_perfect_student_and_positive_for_a_perturbed_one():
    """Data {-1, +1}^d: a student whose x0 is a data point is reconstructed exactly by the exact teacher at a low tau
    (the posterior is a point: tanh saturates in float32), so SRL = 0; a shrunk estimate (0.8 x) gives SRL > 0."""
    teacher = coins()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 2, (64, 1, 4, 4), generator=g).float() * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    tau = method.gamma(26, 0.75)  # alpha / sigma ~ 12 at tau = 20
    assert tau == 20
    assert float(method.shifted_reconstruction_loss(x0, teacher, tau, None, eps)) == 0.0
    assert float(method.shifted_reconstruction_loss(0.8 * x0, teacher, tau, None, eps)) > 0.01


def test_srl_on_gaussian_data_has_the_closed_form_floor():
    """On N(0, s^2) the exact teacher's E[x0 | x_tau] shrinks: for a student output x, E[SRL] =
    (1 - c alpha)^2 E[x^2] + c^2 sigma^2 with c = alpha s^2 / (alpha^2 s^2 + sigma^2) -- zero only as sigma_tau -> 0."""
    s2, tau = 0.25, 500
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.randn(200000, 1, 1, 1, generator=g)
    loss = float(method.shifted_reconstruction_loss(x, gaussian(s2), tau, None, torch.randn(x.shape, generator=g)))
    ab = float(SCHEDULE.alpha_bar(tau))
    a, s = ab**0.5, (1 - ab) ** 0.5
    c = a * s2 / (a**2 * s2 + s**2)
    assert loss == pytest.approx((1 - c * a) ** 2 * s2 + c**2 * s**2, rel=0.02)


def test_srl_gradient_reaches_the_student_only():
    torch.manual_seed(0)
    teacher = Teacher(torch.nn.Conv2d(1, 1, 1), SCHEDULE, 0)
    teacher.model_fn = lambda x, t, c: teacher.unet(x)
    x0_hat = torch.randn(2, 1, 4, 4, requires_grad=True)
    method.shifted_reconstruction_loss(x0_hat, teacher, 100, None, torch.randn(2, 1, 4, 4)).backward()
    assert x0_hat.grad.abs().sum() > 0 and all(p.grad is None for p in teacher.unet.parameters())


# --------------------------------------------------------------------------- noise correction
def test_noise_correction_formula():
    """eps_tilde = eps + (1 - sigma_T)/sigma_T x_T on a known input; its x0 lacks the pure-noise term
    (1 - sigma_T) x_T / alpha_T; a perfect noise estimate (eps = x_T) then decodes to x0 = 0."""
    x_T = torch.tensor([[[[1.0, -2.0]]]])
    eps = torch.tensor([[[[0.5, 0.25]]]])
    sigma = 0.75
    assert torch.allclose(method.noise_correction(eps, x_T, sigma), torch.tensor([[[[0.5 + 1 / 3, 0.25 - 2 / 3]]]]))
    t = 999
    a, s = method.alpha_sigma(SCHEDULE, t, x_T)
    x0 = SCHEDULE.predict_x0(x_T, eps, t)
    x0_nc = SCHEDULE.predict_x0(x_T, method.noise_correction(eps, x_T, s), t)
    assert torch.allclose(x0_nc, x0 - (1 - s) / a * x_T, atol=1e-5)
    assert torch.allclose(SCHEDULE.predict_x0(x_T, method.noise_correction(x_T, x_T, s), t), torch.zeros_like(x_T),
                          atol=1e-5)


# --------------------------------------------------------------------------- the student
def tiny_teacher():
    from common.config import UNetConfig
    from common.models import build_unet

    torch.manual_seed(0)
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], layers_per_block=1, num_classes=10,
                     norm_num_groups=4, attention_head_dim=4)
    return Teacher(build_unet(cfg, 8, 1).eval().requires_grad_(False), SCHEDULE, 10)


def test_student_at_init_equals_the_teacher():
    teacher = tiny_teacher()
    student = method.init_student(teacher)
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 4, 9])
    with torch.no_grad():
        for t in (999, 500, 10):
            assert torch.equal(student.eps(x, t, y), teacher.eps(x, t, y))
        assert torch.equal(method.sample(student, x, y, 3), method.sample(teacher, x, y, 3))
    assert all(p.requires_grad for p in student.unet.parameters())
    assert not any(p.requires_grad for p in teacher.unet.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(student.unet.parameters(), teacher.unet.parameters()))


@pytest.mark.parametrize("inputs,loss", [("backward", "srl"), ("forward", "srl"), ("backward", "x0_mse")])
def test_distillation_loss_trains_the_student_only(inputs, loss):
    teacher = tiny_teacher()
    student = method.init_student(teacher)
    x_T, y, target = torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.rand(2, 1, 8, 8) * 2 - 1
    value = method.distillation_loss(student, teacher, x_T, y, target, torch.Generator().manual_seed(0), inputs, loss,
                                     [1, 2, 3], 0.75)
    value.backward()
    assert torch.isfinite(value) and any(p.grad is not None for p in student.unet.parameters())
    assert all(p.grad is None for p in teacher.unet.parameters())


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(ImagineFlashConfig, paper="imagine_flash", overrides=[f"profile={profile}"], root=REPO)
    assert set(cfg.eval.step_counts) <= set(cfg.distill.step_counts)
    assert profile == "full" or len(cfg.train_seeds) >= 3 or profile == "tiny"


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "imagine_flash" / "claims.yaml")
    counted = [c for c in claims if not c.get("by_design")]
    assert all(c["test"]["unit"] == "train_seed" for c in claims) and len(counted) == 10


# --------------------------------------------------------------------------- the full profile
def test_full_profile_is_sdxl_scale():
    unet = emu_scale.build_unet(meta=True)
    assert sum(p.numel() for p in unet.parameters()) == emu_scale.SDXL_UNET_PARAMS == 2_567_463_684


def test_full_profile_two_steps_of_a_reduced_instance():
    """Two training steps at batch 1 on the CPU through method.distillation_loss (backward + SRL, k in 1..3) on the
    SDXL UNet reduced to one resnet and one transformer layer per block and its first two levels (320, 640 wide:
    111.6M parameters), latent 4 x 16 x 16, label text stand-ins; the SDXL schedule."""
    torch.manual_seed(0)
    red = dict(layers_per_block=1, transformer_layers_per_block=1, block_out_channels=(320, 640),
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
               attention_head_dim=(5, 10))
    net = emu_scale.build(num_classes=10, **red).eval().requires_grad_(False)
    teacher = Teacher(net, NoiseSchedule(**emu_scale.SDXL_SCHEDULE), 10)
    student = method.init_student(teacher)
    opt = torch.optim.SGD(student.unet.parameters(), lr=1e-5)
    x_T, y = torch.randn(1, 4, 16, 16), torch.tensor([3])
    before = next(student.unet.unet.parameters()).clone()
    for step in range(2):
        loss = method.distillation_loss(student, teacher, x_T, y, torch.zeros_like(x_T),
                                        torch.Generator().manual_seed(step), "backward", "srl", [1, 2, 3], 0.75)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    assert not torch.equal(before, next(student.unet.unet.parameters()))


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data -> train_classifier -> train_base_model -> teacher_pairs -> train -> evaluate -> report, tiny."""
    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    from common.stages import prepare_data, teacher_pairs, train_base_model, train_classifier
    from papers.imagine_flash import evaluate, report, train

    with inside(root):
        for stage in (prepare_data, train_classifier, train_base_model, teacher_pairs, train, evaluate, report):
            stage.main([])
    res = json.loads((root / "reports/imagine_flash/results.json").read_text())
    assert {r["comparison"] for r in res["rows"]} == {"direction", "loss", "noise_correction", "teacher", "nc_shift",
                                                      "cost", "curve"}
    verdicts = json.loads((root / "reports/imagine_flash/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == 11
    for fig in ("fid_vs_k", "fid_vs_step", "loss"):
        assert (root / f"reports/imagine_flash/figures/{fig}.png").stat().st_size > 1000
