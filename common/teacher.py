"""The shared scene CLIP as the data papers' teacher: its outputs on the `pool` scenes, read in one place.

The root stage `train_scene_clip` (common/stages/train_scene_clip.py) writes models/scene_clip: the
weights with meta.json (its configuration and score card), pool_scores.npy (the teacher's image-caption
cosine of each pool pair, what CLIP-score filters rank by) and pool_image_embeddings.npy (its image
embeddings of the pool, for curation by clustering). A file that is missing, unreadable or whose rows do
not match the pool fails with one line naming the file and the stage to rerun.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import UnreadableInputError, read_json, reading, require, resolve
from .data import MissingDataError

STAGE = "train_scene_clip"  # the root stage that writes models/scene_clip
SCORES = "pool_scores.npy"
EMBEDDINGS = "pool_image_embeddings.npy"


def teacher_path(cfg, name: str) -> Path:
    """models/scene_clip/<name> under the repository root."""
    return resolve(cfg, cfg.paths.models, "scene_clip", name)


def load_pool_array(cfg, name: str, pool_size: int) -> np.ndarray:
    """A per-pool-pair array written by the teacher stage (one row per pool scene, in the pool's order)."""
    path = require(teacher_path(cfg, name), STAGE, error=MissingDataError)
    with reading(path, STAGE):
        arr = np.load(path)
    if arr.ndim == 0 or len(arr) != pool_size:
        raise UnreadableInputError(f"{path} has {0 if arr.ndim == 0 else len(arr)} rows for a pool of {pool_size} "
                                   f"pairs (made for other scenes: run dvc repro dvc.yaml:{STAGE})")
    return arr


def teacher_scores(cfg, pool_size: int) -> np.ndarray:
    """The teacher's image-caption cosine of each pool pair, shape [pool_size]."""
    scores = load_pool_array(cfg, SCORES, pool_size)
    if scores.ndim != 1:
        raise UnreadableInputError(f"{teacher_path(cfg, SCORES)} has shape {scores.shape}, not [{pool_size}] "
                                   f"(run dvc repro dvc.yaml:{STAGE})")
    return scores


def teacher_embeddings(cfg, pool_size: int) -> np.ndarray:
    """The teacher's image embeddings of the pool, [pool_size, embed_dim]."""
    return load_pool_array(cfg, EMBEDDINGS, pool_size)


def teacher_meta(cfg) -> dict:
    """The teacher's meta.json: {"config": ..., "metrics": its score card}."""
    return read_json(teacher_path(cfg, "meta.json"), STAGE, keys=("metrics",))
