"""Sampling experiments on the shared base model: sample with a paper's hooks, score, count cost.

The group-A papers all do the same thing around their method: load `models/base_model`, the
metric backbone and its reference set, then generate sample sets (per-sample seeded, so arms with
the same seed share their noise) and score them. This keeps that in one place, with the metric's
resolution: the score of real images against the same reference (`real_floor`).

Devices: the network and the metric backbone run on `device` (default `common.devices.default_device()`,
a GPU when available; REPLICATE_DEVICE=cpu forces the CPU); the seeded noise is drawn on the CPU, so
arms and devices share it; images come back on the CPU.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, Mapping, Tuple

import torch

from .config import RootConfig, resolve
from .data import balanced_subset, load_split, to_uint8
from .devices import DeviceLike, as_device
from .diffusion import unet_fn
from .evaluation import SampleScorer
from .models import load_diffusion_model
from .sampling import Hooks, SamplingSpec, generate_samples

# Metrics that are distances between two sets: their value for real images is the metric's resolution.
# Precision, recall and class accuracy of real images are scores near their ceiling, not a distance.
FLOOR_METRICS = ("fid", "kid")


def real_subset(data_dir: Path, num_samples: int, num_classes: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images, labels) of `num_samples` training images with the class balance of a sample set.

    Conditional models sample labels 0, 1, .., K-1, 0, 1, ..: the subset has the same labels in the same
    order (`balanced_subset`). An unconditional model (num_classes 0) samples the data's own class mix,
    so its subset is a seeded uniform draw.
    """
    x, y = load_split(data_dir, "train")
    if num_classes >= 1:
        pick = balanced_subset(y, num_samples, num_classes, seed)
    else:
        pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:num_samples]
    return x[pick], y[pick]


def floors_of(scores: Mapping[str, float]) -> Dict[str, float]:
    """The resolution entries (FLOOR_METRICS, backbone in the key) of a real image set's scores."""
    return {k: float(v) for k, v in scores.items() if k.split("[", 1)[0] in FLOOR_METRICS and "[" in k}


def real_floor(scorer, data_dir: Path, num_samples: int, num_classes: int, seed: int) -> Dict[str, float]:
    """Real-vs-real value of each distance metric at `num_samples` (metric key -> value).

    A set of real training images, as many and as class-balanced as the sample sets, is scored against
    the reference exactly like samples (`scorer.score`). Two sample sets whose difference is smaller
    than this differ by less than a set of real images differs from the reference: the difference is
    below the metric's resolution at this sample count (docs/verdicts.md, "Resolution";
    `evaluate_claims(claims, rows, floors)` marks such verdicts).
    """
    images, labels = real_subset(data_dir, num_samples, num_classes, seed)
    return floors_of(scorer.score(images, labels))


class BaseModelExperiment:
    def __init__(self, cfg: RootConfig, model_dir: str = "base_model", device: DeviceLike = None):
        self.device = as_device(device)
        self.unet, self.schedule, self.meta = load_diffusion_model(resolve(cfg, cfg.paths.models, model_dir))
        self.unet.to(self.device)
        self.data_dir = resolve(cfg, cfg.paths.data, "prepared")
        self.scorer = SampleScorer(self.data_dir, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name,
                                   device=self.device)
        self.shape = (self.unet.config.in_channels, cfg.data.resolution, cfg.data.resolution)
        self.num_classes = self.meta["num_classes"]
        self.model_calls = 0  # network evaluations per sample summed over samples (guidance counts 2)

    def sample(self, spec: SamplingSpec, hooks_factory: Callable[[], Hooks] = Hooks,
               progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor, float]:
        """(uint8 images, labels, wall seconds) of one sample set, on the CPU; sampled on `self.device`."""
        t0 = time.perf_counter()
        s = generate_samples(unet_fn(self.unet), self.schedule, spec, self.shape, self.num_classes,
                             hooks_factory=hooks_factory, progress=progress, device=self.device)
        self.model_calls += s.model_calls  # counted by the sampler
        return to_uint8(s.images), s.labels, time.perf_counter() - t0

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        return self.scorer.score(images, labels)

    def real_floor(self, cfg: RootConfig, num_samples: int) -> Dict[str, float]:
        """The metrics' real-vs-real values at `num_samples` samples, for `evaluate_claims(..., floors)`.

        Differences between two sample sets smaller than two real sets' (here: a class-balanced set of
        real training images scored against the reference like samples) are below the metric's
        resolution at that sample count. Compute it at the size of the sample sets the claims compare.
        """
        return real_floor(self.scorer, self.data_dir, num_samples, self.num_classes, cfg.seed)
