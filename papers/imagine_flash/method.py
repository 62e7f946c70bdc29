"""Imagine Flash -- Kohler, Pumarola, Schoenfeld, Sanakoyeu, Sumbaly, Vajda, Thabet (Meta, 2024),
"Imagine Flash: Accelerating Emu Diffusion Models with Backward Distillation" (arXiv:2405.05224). No official code.

A k-step student (k = 1..3, timesteps t_1 = T > t_2 > ... > t_k) is initialised from an eps-prediction teacher and
distilled with three pieces (the abstract's (i)-(iii)); everything below the abstract's words is OUR
RECONSTRUCTION, marked [R] (papers/imagine_flash/README.md separates the two):

(i)  Backward distillation: the student's input at t_i is x_hat_{t_i}, reached by the student's OWN sampler from pure
     noise x_T ~ N(0, I) through t_1..t_{i-1} without gradient, not the forward-process alpha_t x0 + sigma_t eps
     ("calibrating the student on its own backward trajectory"; no x0 leaks into the input, train = inference).
     [R] the student's sampler is deterministic DDIM (eta = 0) with the sampler's x0 clipping:
         x_hat_{t_{j+1}} = alpha_{t_{j+1}} x0_theta(x_hat_{t_j}) + sigma_{t_{j+1}} eps_theta(x_hat_{t_j})     (R1)
(ii) Shifted reconstruction loss (SRL): the student's clean estimate is re-noised to a t-dependent level tau = gamma(t)
     and the frozen teacher denoises it; the student regresses that, with stop-gradient:
         x0_hat = f_theta(x_hat_{t_i}, t_i)                                                                   (R2)
         x_tilde = alpha_tau x0_hat + sigma_tau eps,   eps ~ N(0, I),   tau = gamma(t_i)                       (R3)
         L_SRL = d(x0_hat, sg[f_psi(x_tilde, tau)])                                                           (R4)
     [R] gamma(t) = round(shift * t) (high tau at large t: the teacher supplies structure; low tau at small t:
     detail), d = mean squared error in pixels (the teacher's target clipped to [-1, 1] like its sampler's x0).
(iii) Noise correction (inference only, t = T): "addressing singularities in noise prediction". [R] At t_1 = T the
     input IS the noise (x_T = eps, unit variance), while the schedule reads x_T = alpha_T x0 + sigma_T eps with
     alpha_T > 0, sigma_T < 1. The x0 implied by an eps estimate, (x_T - sigma_T eps)/alpha_T, then contains the
     pure-noise term (1 - sigma_T) x_T / alpha_T, which we remove by adding a bias built from the known x_T:
         eps_tilde(x_T) = eps_theta(x_T, T) + (1 - sigma_T) / sigma_T * x_T                                  (R5)
     (for a schedule with alpha_T -> 0 the correction vanishes with sigma_T -> 1; on the shared teacher's linear
     schedule, alpha_T = 0.0064, it is a small shift: its effect is what the evaluation measures).

Baselines: forward distillation (input alpha_t x0 + sigma_t eps of a teacher sample x0) and the x0-MSE to the
multi-step teacher's ODE sample for the same noise (the common/teacher_pairs.py pairs).
Notation: alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t) of the shared 1,000-step DDPM schedule; images [N, C, H, W].
"""

from __future__ import annotations

import copy
from typing import List, Sequence

import torch

from common.sampling import timesteps as spaced_timesteps
from common.teacher_pairs import Teacher

INPUTS = ("backward", "forward")  # (i) vs the usual forward-process inputs
LOSSES = ("srl", "x0_mse")        # (ii) vs regression onto the multi-step teacher's sample


def student_timesteps(k: int, T: int) -> List[int]:
    """t_1 = T-1 > ... > t_k: the k-step student's timesteps, evenly spaced from the noise end (diffusers' 'trailing')."""
    return spaced_timesteps(k, T, "trailing")


def init_student(teacher: Teacher) -> Teacher:
    """The student f_theta: a trainable copy of the teacher's network, same schedule and conditioning."""
    unet = copy.deepcopy(teacher.unet).requires_grad_(True)
    return Teacher(unet, teacher.schedule, teacher.num_classes)


def alpha_sigma(schedule, t, like: torch.Tensor):
    """(alpha_t, sigma_t) broadcast to `like` ([N] or scalar t)."""
    ab = schedule._bc(schedule.alpha_bar(torch.as_tensor(t)), like)
    return ab.sqrt(), (1 - ab).sqrt()


def ddim_step(schedule, x0: torch.Tensor, eps: torch.Tensor, t_next: int) -> torch.Tensor:
    """(R1): x_{t_next} = alpha_{t_next} x0 + sigma_{t_next} eps (deterministic DDIM)."""
    a, s = alpha_sigma(schedule, t_next, x0)
    return a * x0 + s * eps


def noise_correction(eps: torch.Tensor, x_T: torch.Tensor, sigma_T) -> torch.Tensor:
    """(R5): eps_tilde = eps + (1 - sigma_T) / sigma_T * x_T; the x0 it implies lacks the pure-noise term
    (1 - sigma_T) x_T / alpha_T of the uncorrected one."""
    return eps + (1 - sigma_T) / sigma_T * x_T


def first_step(student: Teacher, x_T, t_1: int, label, corrected: bool, clip: bool = True):
    """(x0, eps) of the student at t_1 = T, with noise correction when `corrected` (x0 re-derived from eps_tilde)."""
    x0, eps = student.predict(x_T, t_1, label)
    if corrected:
        _, s = alpha_sigma(student.schedule, t_1, x_T)
        eps = noise_correction(eps, x_T, s)
        x0 = student.schedule.predict_x0(x_T, eps, torch.full((x_T.shape[0],), t_1, dtype=torch.long))
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = student.schedule.predict_eps(x_T, x0, torch.full((x_T.shape[0],), t_1, dtype=torch.long))
    return x0, eps


@torch.no_grad()
def sample(student: Teacher, x_T: torch.Tensor, label, k: int, corrected: bool = False) -> torch.Tensor:
    """Inference: k student calls from x_T along t_1..t_k, DDIM between them; returns x0 in [-1, 1]."""
    ts = student_timesteps(k, student.schedule.T)
    x0, eps = first_step(student, x_T, ts[0], label, corrected)
    for j in range(1, k):
        x = ddim_step(student.schedule, x0, eps, ts[j])
        x0, eps = student.predict(x, ts[j], label, clip=True)
    return x0


@torch.no_grad()
def backward_input(student: Teacher, x_T: torch.Tensor, label, ts: Sequence[int], i: int) -> torch.Tensor:
    """(i): x_hat_{t_i} (i = 0-based index into ts): the student's own no-grad DDIM trajectory from x_T through
    t_1..t_{i-1} (x_T itself for i = 0). Uses the same clipping as inference, no noise correction (training)."""
    x = x_T
    for j in range(i):
        x0, eps = student.predict(x, ts[j], label, clip=True)
        x = ddim_step(student.schedule, x0, eps, ts[j + 1])
    return x


def forward_input(schedule, x0: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """The forward-distillation baseline's input alpha_t x0 + sigma_t eps (x0: a teacher sample)."""
    a, s = alpha_sigma(schedule, t, x0)
    return a * x0 + s * eps


def gamma(t: int, shift: float) -> int:
    """[R] tau = gamma(t) = round(shift * t): monotone in t, tau < t for shift < 1."""
    return int(round(shift * t))


def shifted_reconstruction_loss(x0_hat, teacher: Teacher, tau: int, label, eps) -> torch.Tensor:
    """(R3)-(R4): mean over pixels and batch of (x0_hat - sg[teacher x0 of x0_hat re-noised at tau])^2."""
    with torch.no_grad():
        x_tilde = forward_input(teacher.schedule, x0_hat.detach(), tau, eps)
        target = teacher.x0(x_tilde, tau, label, clip=True)
    return (x0_hat - target).square().mean()


def x0_mse_loss(x0_hat, teacher_sample) -> torch.Tensor:
    """Baseline: || x0_hat - x0_teacher(x_T) ||^2, the multi-step teacher's ODE sample for the same x_T."""
    return (x0_hat - teacher_sample).square().mean()


def distillation_loss(student: Teacher, teacher: Teacher, x_T, label, teacher_sample, generator: torch.Generator,
                      inputs: str, loss: str, step_counts: Sequence[int], shift: float) -> torch.Tensor:
    """One training step's loss: draw k from step_counts and i from 1..k, build the student's input at t_i
    (backward: its own trajectory from x_T; forward: the teacher sample noised to t_i), x0_hat = f_theta at t_i,
    then SRL or x0-MSE. One (k, i) per step, all draws from `generator` (k, i, then the noise)."""
    k = int(step_counts[int(torch.randint(len(step_counts), (1,), generator=generator))])
    i = int(torch.randint(k, (1,), generator=generator))
    ts = student_timesteps(k, student.schedule.T)
    eps = torch.randn(x_T.shape, generator=generator).to(x_T.device)
    if inputs == "backward":
        x_in = backward_input(student, x_T, label, ts, i)
    elif inputs == "forward":
        x_in = forward_input(student.schedule, teacher_sample, ts[i], eps)
    else:
        raise ValueError(f"inputs must be one of {INPUTS}, not {inputs!r}")
    x0_hat = student.x0(x_in, ts[i], label)  # unclipped: the gradient flows through every pixel
    if loss == "srl":
        return shifted_reconstruction_loss(x0_hat, teacher, gamma(ts[i], shift), label,
                                           torch.randn(x_T.shape, generator=generator).to(x_T.device))
    if loss == "x0_mse":
        return x0_mse_loss(x0_hat, teacher_sample)
    raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
