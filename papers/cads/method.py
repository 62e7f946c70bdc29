"""CADS -- Sadat, Buhmann, Bradley, Hilliges, Weber, "CADS: Unleashing the Diversity of Diffusion
Models through Condition-Annealed Sampling", ICLR 2024 (arXiv:2310.17347).

At high classifier-free guidance scales a conditional diffusion model produces samples that look
alike. CADS is training-free: at every sampling step the *condition embedding* y is corrupted by
Gaussian noise whose strength is annealed from "pure noise" at the start of sampling to zero at
the end (Sec. 3.1), with the paper's time convention t in [0, 1], t = 1 pure noise:

    y_hat = sqrt(gamma(t)) y + s sqrt(1 - gamma(t)) n,   n ~ N(0, I), fresh at every step    (eq. 1)

    gamma(t) = 1                          t <= tau1
             = (tau2 - t) / (tau2 - tau1)  tau1 < t < tau2                                  (eq. 2)
             = 0                          t >= tau2

    y_rescaled = (y_hat - mean(y_hat)) / std(y_hat) * std(y) + mean(y)                      (eq. 3)
    y_final    = psi * y_rescaled + (1 - psi) * y_hat                                        (eq. 4)

s is the noise scale, psi the mixing factor of the rescaled copy (which keeps large s from
diverging). With classifier-free guidance, y_final replaces y in the conditional branch; the
null-class (unconditional) branch keeps its own embedding.

The paper's guidance-annealing baseline ("dynamic CFG", Table 4) anneals the guidance scale with
the same schedule instead of the condition:  w_hat(t) = gamma(t) w_CFG.

Our model: the shared class-conditional DDPM is a diffusers `UNet2DModel`; the class label enters as
`class_emb = unet.class_embedding(label)` (an nn.Embedding, [N, 128]), added to the timestep
embedding, the analogue of DiT's label embedding y. CADS corrupts that vector through the shared
sampler's embedding hook (`CADSHooks.embedding`; the sampler then conditions the network on y_final);
nothing else of the sampler changes. The guidance-annealing baseline is the shared classifier-free
guidance with a per-step scale (`GuidanceAnnealing.guidance`).

Decisions the paper (Sec. 3, eqs. 1-3) leaves open, with no official code to settle them (docs/decisions.md):
  * time: t = t_train / (T - 1) for the training timestep the network is queried at
    (t = 1 on the first step from x_T, t = 0 at t_train = 0);
  * statistics of eq. 3: per sample, over the embedding's D entries (the A1111 implementation
    uses the whole conditioning tensor, identical with one condition per call). Biased and
    unbiased std give the same ratio std(y) / std(y_hat), so the choice does not matter;
  * the null-class embedding is not noised (the conditional branch only);
  * n is per-sample seeded: sample j's noise stream is the per-sample generator the shared sampler
    hands its hooks (`Hooks.start`), seeded from sample j's own seed, so samples do not depend on
    the batch size and arms with the same seed share the CADS noise too;
  * s = 0 switches CADS off (eq. 3 would divide 0 by 0 at gamma = 0).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List

import torch

from common.sampling import Hooks


@dataclass(frozen=True)
class CADS:
    """The condition annealer: schedule (eq. 2) and corruption (eqs. 1, 3, 4).

    Defaults: tau1 = 0.6, tau2 = 0.9, s = 0.25, psi = 1, the A1111 implementation's (the paper's
    ablation, Table 6, finds tau1 = 0.6 best and varies s over 0.025..0.25, per a third-party summary).
    On the shared 16x16 MNIST model that window acts where x_t holds almost no signal; the report's
    sweep (reports/cads) gives a window that acts where this model forms the digit.
    """

    tau1: float = 0.6
    tau2: float = 0.9
    s: float = 0.25  # noise scale
    psi: float = 1.0  # mixing factor of the rescaled embedding
    eps: float = 1e-12  # guards std(y_hat) in eq. 3

    def __post_init__(self):
        if not 0.0 <= self.tau1 < self.tau2 <= 1.0:
            raise ValueError(f"CADS needs 0 <= tau1 < tau2 <= 1, got tau1={self.tau1}, tau2={self.tau2}")
        if self.s < 0:
            raise ValueError(f"CADS noise scale s must be >= 0, got {self.s}")
        if not 0.0 <= self.psi <= 1.0:
            raise ValueError(f"CADS mixing factor psi must be in [0, 1], got {self.psi}")

    def gamma(self, t):
        """gamma(t), eq. (2); t in [0, 1] (1 = pure noise), float or tensor."""
        if torch.is_tensor(t):
            return ((self.tau2 - t.double()) / (self.tau2 - self.tau1)).clamp(0.0, 1.0)
        return min(max((self.tau2 - t) / (self.tau2 - self.tau1), 0.0), 1.0)

    def corrupt(self, y: torch.Tensor, gamma, n: torch.Tensor) -> torch.Tensor:
        """y_final from y [N, D], gamma (float or [N]) and n [N, D] ~ N(0, I): eqs. (1), (3), (4)."""
        g = torch.as_tensor(gamma, dtype=torch.float64, device=y.device)
        if self.s == 0 or bool((g == 1).all()):  # no noise: y_final = y exactly
            return y
        g = g.reshape(-1, 1) if g.dim() else g
        y64 = y.double()
        y_hat = g.sqrt() * y64 + self.s * (1 - g).sqrt() * n.to(y.device).double()  # eq. (1)
        mu_in, sigma_in = y64.mean(1, keepdim=True), y64.std(1, keepdim=True)
        mu_hat, sigma_hat = y_hat.mean(1, keepdim=True), y_hat.std(1, keepdim=True)
        y_rescaled = (y_hat - mu_hat) / (sigma_hat + self.eps) * sigma_in + mu_in  # eq. (3)
        y_final = self.psi * y_rescaled + (1 - self.psi) * y_hat  # eq. (4)
        return y_final.to(y.dtype)


def diffusion_time(t_train, num_train_timesteps: int):
    """The paper's t in [0, 1] (1 = pure noise) of a training timestep in 0..T-1."""
    return t_train / (num_train_timesteps - 1)


class CADSHooks(Hooks):
    """Sampler hooks of one batch: CADS on the condition embedding of the conditional branch.

    `start` keeps the per-sample generators; `embedding` draws fresh n [N, D] for the step from them (every
    step, whatever gamma, so the noise sequence does not depend on tau1, tau2, s) and returns y_final.
    The null-class branch of classifier-free guidance keeps its own embedding (the sampler builds it).
    """

    def __init__(self, cads: CADS, num_train_timesteps: int, null_class: int):
        self.cads, self.T, self.null_class = cads, num_train_timesteps, null_class
        self.gens: List[torch.Generator] = []
        self.gammas: List[float] = []  # per step, for the report

    def start(self, x, c, t, gens):
        if gens is None:
            raise ValueError("CADS needs per-sample seeded noise (common.sampling.SampleNoise) for its noise n")
        self.gens = gens
        return x

    def embedding(self, y, c, i, t):
        gamma_t = self.cads.gamma(diffusion_time(torch.as_tensor(t, dtype=torch.float64), self.T))  # eq. (2)
        n = torch.stack([torch.randn(y.shape[1], generator=g) for g in self.gens])  # [N, D], fresh every step
        self.gammas.append(float(gamma_t.mean()))
        y_final = self.cads.corrupt(y, gamma_t, n)  # eqs. (1), (3), (4)
        return torch.where((c != self.null_class)[:, None], y_final, y)  # a sample asking for the null class keeps it


@contextmanager
def condition_annealing(unet, cads: CADS, null_class: int,
                        num_train_timesteps: int = 1000) -> Iterator[Callable[[], CADSHooks]]:
    """Within the block, sampling `unet` with the yielded hooks factory runs CADS (common.sampling):

        with condition_annealing(exp.unet, CADS(tau1=0.1, tau2=0.5, s=1.0), exp.num_classes, exp.schedule.T) as hooks:
            images, labels, _ = exp.sample(spec, hooks)

    Checks that the network takes its condition through a class-embedding table (`unet.class_embedding`,
    an nn.Embedding, whose rows the hooks corrupt); the network itself is not modified.
    """
    if not isinstance(getattr(unet, "class_embedding", None), torch.nn.Embedding):
        raise TypeError("CADS needs a class-conditional UNet2DModel: `unet.class_embedding` is not an nn.Embedding")
    yield lambda: CADSHooks(cads, num_train_timesteps, null_class)


# --------------------------------------------------------------------------- baseline
class GuidanceAnnealing(Hooks):
    """Guidance annealing (the paper's "dynamic CFG" baseline, Table 4): the guidance scale follows gamma,

        eps = eps(x, null) + gamma(t) w (eps(x, c) - eps(x, null)),    w_hat(t) = gamma(t) w_CFG,

    so sampling starts unconditional (gamma = 0 for t >= tau2) and ends with the full scale w, the
    sampling spec's guidance scale. `gamma` is a CADS schedule's `gamma`.
    """

    def __init__(self, gamma: Callable, num_train_timesteps: int = 1000):
        self.gamma, self.T = gamma, num_train_timesteps

    def guidance(self, w, t):
        return w * self.gamma(diffusion_time(t.double(), self.T))


def gamma_schedule(cads: CADS, steps: List[int], num_train_timesteps: int = 1000) -> List[float]:
    """gamma at each sampling step's timestep (for plots and the report)."""
    return [float(cads.gamma(diffusion_time(float(t), num_train_timesteps))) for t in steps]
