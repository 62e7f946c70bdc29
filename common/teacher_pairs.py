"""The distillation papers' teacher: its x0 / eps at (x_t, t, label) and its ODE pairs, read in one place.

The teacher is the shared class-conditional base model (root stage train_base_model: a diffusers UNet,
eps-prediction, 1,000-step DDPM schedule). Two things the one-step distillation papers need from it:

- `Teacher`: eps_psi(x_t, t, c) and x0_psi(x_t, t, c) = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), with
  classifier-free guidance at a fixed scale, at any per-sample t. Imagine Flash's shifted reconstruction
  loss re-noises the student's x0 to tau and asks the teacher for x0 there; PaGoDA's PF-ODE inversion
  needs eps along the trajectory (the DDIM map run from data to noise). Nothing here switches gradients
  off: the caller decides (`torch.no_grad()` for a stop-gradient target, or gradients through the frozen
  network's input).
- The pairs (root stage teacher_pairs, common/stages/teacher_pairs.py): for each per-sample seed s, its
  initial noise x_T (drawn exactly as common.sampling.SampleNoise draws it from s, so a pair does not depend
  on the batch it was made in), a class label and the teacher's deterministic DDIM (eta 0) sample from it;
  a `train` and a `heldout` split (different seeds), written with `datasets` to data/teacher_pairs/pairs,
  plus meta.json (the teacher's sampler, its NFE, the model it came from). `load_pairs` reads a split back
  as tensors, `pairs_meta` the sampler facts; a missing or unreadable file names the stage to rerun.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from .config import read_json, reading, resolve
from .diffusion import NoiseSchedule, unet_fn
from .sampling import classifier_free_guidance

STAGE = "teacher_pairs"  # the root stage that writes data/teacher_pairs
SPLITS = ("train", "heldout")
COLUMNS = ("noise", "label", "sample", "seed")


class Teacher:
    """eps and x0 predictions of a frozen class-conditional eps-prediction UNet (guidance at `guidance_scale`).

    `t`: an int or a LongTensor [N] of training timesteps (0..T-1); `label`: LongTensor [N]; x_t: [N, C, H, W].
    """

    def __init__(self, unet, schedule: NoiseSchedule, num_classes: int, guidance_scale: float = 1.0):
        self.unet, self.schedule, self.num_classes = unet, schedule, num_classes
        fn = unet_fn(unet)
        self.model_fn = classifier_free_guidance(fn, guidance_scale, num_classes) if num_classes else fn

    def _t(self, t, x: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long, device=x.device)
        return t.expand(x.shape[0]) if t.dim() == 0 else t

    def eps(self, x_t: torch.Tensor, t, label: Optional[torch.Tensor]) -> torch.Tensor:
        """eps_psi(x_t, t, c) [N, C, H, W]."""
        return self.model_fn(x_t, self._t(t, x_t), label)

    def x0(self, x_t: torch.Tensor, t, label: Optional[torch.Tensor], clip: bool = False) -> torch.Tensor:
        """x0_psi(x_t, t, c) = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), optionally clipped to [-1, 1]."""
        return self.predict(x_t, t, label, clip)[0]

    def predict(self, x_t: torch.Tensor, t, label: Optional[torch.Tensor], clip: bool = False):
        """(x0, eps) from one network call; with `clip`, x0 is clipped and eps re-derived from it (the sampler's rule)."""
        tt = self._t(t, x_t)
        eps = self.eps(x_t, tt, label)
        x0 = self.schedule.predict_x0(x_t, eps, tt)
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = self.schedule.predict_eps(x_t, x0, tt)
        return x0, eps


def load_teacher(cfg, guidance_scale: Optional[float] = None) -> Teacher:
    """The shared base model as a `Teacher` (guidance: `teacher_pairs.guidance_scale` unless given)."""
    from .models import load_diffusion_model

    unet, schedule, _ = load_diffusion_model(resolve(cfg, cfg.paths.models, "base_model"))
    scale = cfg.teacher_pairs.guidance_scale if guidance_scale is None else guidance_scale
    return Teacher(unet, schedule, cfg.base_model.unet.num_classes, scale)


# --------------------------------------------------------------------------- the pairs on disk
def pairs_dir(cfg) -> Path:
    """data/teacher_pairs under the repository root."""
    return resolve(cfg, cfg.paths.data, "teacher_pairs")


@dataclass
class Pairs:
    """One split of teacher pairs: x_T [N, C, H, W], labels [N], the teacher's samples [N, C, H, W] in [-1, 1],
    the per-sample seeds [N] (x_T = SampleNoise([seed], shape)())."""

    noise: torch.Tensor
    label: torch.Tensor
    sample: torch.Tensor
    seed: torch.Tensor

    def __len__(self) -> int:
        return self.noise.shape[0]


def load_pairs(cfg_or_dir: Union[Path, str, object], split: str = "train") -> Pairs:
    """A split (`train` | `heldout`) of the teacher pairs as float32 / int64 tensors."""
    from .config import load_from_disk
    from .data import MissingDataError

    if split not in SPLITS:
        raise ValueError(f"teacher pairs have splits {SPLITS}, not {split!r}")
    root = Path(cfg_or_dir) if isinstance(cfg_or_dir, (str, Path)) else pairs_dir(cfg_or_dir)
    ds = load_from_disk(root / "pairs", STAGE, error=MissingDataError)[split]
    with reading(root / "pairs" / split, STAGE):
        cols = ds.with_format("numpy")[:]
        out = Pairs(*(torch.from_numpy(np.ascontiguousarray(cols[k])) for k in COLUMNS))
    return Pairs(out.noise.float(), out.label.long(), out.sample.float(), out.seed.long())


def pairs_meta(cfg_or_dir) -> dict:
    """meta.json of the pairs: {"nfe", "method", "eta", "guidance_scale", "clip_x0", "spacing", "seeds",
    "counts", "teacher", "seconds"}: the teacher's sampler and cost, what a paper's cost claim compares against."""
    root = Path(cfg_or_dir) if isinstance(cfg_or_dir, (str, Path)) else pairs_dir(cfg_or_dir)
    return read_json(root / "meta.json", STAGE, keys=("nfe", "method", "guidance_scale", "counts"))
