"""Determinism: same seed, same machine -> same numbers (tests/common/test_determinism.py)."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True):
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    Stages draw their randomness from explicit generators keyed by (seed, step) or per-sample
    seeds; this global seed only fixes what remains (weight initialisation).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
