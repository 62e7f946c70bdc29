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
embedding, the analogue of DiT's label embedding y. CADS corrupts that vector through a forward
hook on `unet.class_embedding` (`condition_annealing` below); nothing else of the sampler changes.

Decisions the paper (Sec. 3, eqs. 1-3) leaves open, with no official code to settle them (docs/decisions.md):
  * time: t = t_train / (T - 1) for the training timestep the network is queried at
    (t = 1 on the first step from x_T, t = 0 at t_train = 0);
  * statistics of eq. 3: per sample, over the embedding's D entries (the A1111 implementation
    uses the whole conditioning tensor, identical with one condition per call). Biased and
    unbiased std give the same ratio std(y) / std(y_hat), so the choice does not matter;
  * the null-class embedding is not noised (the conditional branch only);
  * n is per-sample seeded: sample j's noise stream is keyed by its own initial noise x_T(j),
    itself drawn from sample j's seed (common.sampling.SampleNoise), so samples do not depend on
    the batch size and arms that share x_T share the CADS noise too;
  * s = 0 switches CADS off (eq. 3 would divide 0 by 0 at gamma = 0).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List

import torch

from common.diffusion import ModelFn
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


def sample_key(x_T: torch.Tensor, salt: bytes = b"cads") -> int:
    """A 63-bit seed from one sample's initial noise x_T (its bytes), for its CADS noise stream."""
    digest = hashlib.blake2b(x_T.detach().cpu().contiguous().numpy().tobytes(), digest_size=8, person=salt)
    return int.from_bytes(digest.digest(), "little") >> 1


class CADSHooks(Hooks):
    """Sampler hooks of one batch: keep the step's gamma(t) and fresh per-sample noise n for the embedding hook.

    `timestep` (step 0) seeds one generator per sample from its x_T; `condition` draws n [N, D] for
    the step (every step, whatever gamma, so the noise sequence does not depend on tau1, tau2, s).
    """

    def __init__(self, cads: CADS, embed_dim: int, num_train_timesteps: int, null_class: int, active: list):
        self.cads, self.embed_dim, self.T, self.null_class = cads, embed_dim, num_train_timesteps, null_class
        self._active = active  # shared with the forward hook: [the hooks of the batch being sampled]
        self.gens: List[torch.Generator] = []
        self.gamma_t, self.n = 1.0, None
        self.gammas: List[float] = []  # per step, for the report

    def timestep(self, x, i, t):
        if i == 0:
            self.gens = [torch.Generator().manual_seed(sample_key(xj)) for xj in x]
        return t

    def condition(self, c, i, t):
        tt = torch.as_tensor(t, dtype=torch.float64)
        self.gamma_t = self.cads.gamma(diffusion_time(tt, self.T))
        self.n = torch.stack([torch.randn(self.embed_dim, generator=g) for g in self.gens])  # [N, D]
        self.gammas.append(float(self.gamma_t.mean()))
        self._active[:] = [self]
        return c

    def embed(self, labels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Class embeddings y [B, D] of `labels` [B] -> CADS-corrupted conditional rows.

        The conditional branch is the first N rows (common.sampling's guidance concatenates
        [conditional, null]); null-class rows are left as they are.
        """
        n = len(self.gens)
        if self.n is None or y.shape[0] not in (n, 2 * n):
            raise RuntimeError(f"CADS: class embedding called with {y.shape[0]} rows for a batch of {n} samples "
                               "(expected N, or 2N with classifier-free guidance)")
        cond = labels[:n] != self.null_class  # [N]
        y_final = self.cads.corrupt(y[:n], self.gamma_t, self.n)
        out = y.clone()
        out[:n] = torch.where(cond[:, None], y_final, y[:n])
        return out


@contextmanager
def condition_annealing(unet, cads: CADS, null_class: int,
                        num_train_timesteps: int = 1000) -> Iterator[Callable[[], CADSHooks]]:
    """Within the block, sampling `unet` runs CADS; yields the hooks factory for common.sampling.

        with condition_annealing(exp.unet, CADS(tau1=0.1, tau2=0.5, s=1.0), exp.num_classes, exp.schedule.T) as hooks:
            images, labels, _ = exp.sample(spec, hooks)

    A forward hook on `unet.class_embedding` (an nn.Embedding) swaps in the corrupted embeddings of
    the batch being sampled (every class-embedding call inside the block, after the first step, uses
    that batch's current step); it is removed on exit, leaving the network untouched.
    """
    emb = getattr(unet, "class_embedding", None)
    if not isinstance(emb, torch.nn.Embedding):
        raise TypeError("CADS needs a class-conditional UNet2DModel: `unet.class_embedding` is not an nn.Embedding")
    active: list = []

    def on_embedding(module, inputs, output):
        return active[0].embed(inputs[0], output) if active else output

    def factory() -> CADSHooks:
        return CADSHooks(cads, emb.embedding_dim, num_train_timesteps, null_class, active)

    handle = emb.register_forward_hook(on_embedding)
    try:
        yield factory
    finally:
        handle.remove()
        active.clear()


# --------------------------------------------------------------------------- baseline
def dynamic_cfg(model_fn: ModelFn, w: float, null_class: int, gamma: Callable, num_train_timesteps: int = 1000
                ) -> ModelFn:
    """Guidance annealing (the paper's "dynamic CFG" baseline, Table 4): the guidance scale follows gamma,

        eps = eps(x, null) + gamma(t) w (eps(x, c) - eps(x, null)),

    so sampling starts unconditional (gamma = 0 for t >= tau2) and ends with the full scale w.
    `gamma` is a CADS schedule's `gamma`; pass the result to common.sampling with guidance_scale 1.
    """

    def fn(x, t, c):
        w_t = (w * gamma(diffusion_time(t.double(), num_train_timesteps))).to(x.dtype).reshape(-1, 1, 1, 1)
        both = model_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, torch.full_like(c, null_class)]))
        e_c, e_u = both.chunk(2)
        return e_u + w_t * (e_c - e_u)

    return fn


def gamma_schedule(cads: CADS, steps: List[int], num_train_timesteps: int = 1000) -> List[float]:
    """gamma at each sampling step's timestep (for plots and the report)."""
    return [float(cads.gamma(diffusion_time(float(t), num_train_timesteps))) for t in steps]

