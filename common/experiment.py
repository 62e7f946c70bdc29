"""Sampling experiments on the shared base model: sample with a paper's hooks, score, count cost.

The group-A papers all do the same thing around their method: load `models/base_model`, the
metric backbone and its reference set, then generate sample sets (per-sample seeded, so arms with
the same seed share their noise) and score them. This keeps that in one place.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Tuple

import torch

from .config import RootConfig, resolve
from .data import to_uint8
from .diffusion import unet_fn
from .evaluation import SampleScorer
from .models import load_diffusion_model
from .sampling import Hooks, SamplingSpec, generate_all


class BaseModelExperiment:
    def __init__(self, cfg: RootConfig, model_dir: str = "base_model"):
        self.unet, self.schedule, self.meta = load_diffusion_model(resolve(cfg, cfg.paths.models, model_dir))
        self.scorer = SampleScorer(resolve(cfg, cfg.paths.data, "prepared"),
                                   resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name)
        self.shape = (self.unet.config.in_channels, cfg.data.resolution, cfg.data.resolution)
        self.num_classes = self.meta["num_classes"]
        self.model_calls = 0  # network evaluations per sample summed over samples (guidance counts 2)

    def sample(self, spec: SamplingSpec, hooks_factory: Callable[[], Hooks] = Hooks,
               progress: bool = True) -> Tuple[torch.Tensor, torch.Tensor, float]:
        """(uint8 images, labels, wall seconds) of one sample set."""
        t0 = time.perf_counter()
        x, y = generate_all(unet_fn(self.unet), self.schedule, spec, self.shape, self.num_classes,
                            hooks_factory=hooks_factory, progress=progress)
        self.model_calls += spec.num_samples * spec.nfe * (2 if spec.guidance_scale != 1.0 else 1)
        return to_uint8(x), y, time.perf_counter() - t0

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        return self.scorer.score(images, labels)
