"""Schema of papers/ssl_data_curation/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, ClipModelConfig, ClipTrainConfig, RootConfig, required


@dataclass
class CurationConfig:
    """Hierarchical k-means with resampling (Alg. 1) + hierarchical balanced sampling (Alg. 2)."""

    # k_t, level 1 (leaves) first
    n_clusters: List[int] = required(ge=1, nonempty=True)
    # points per cluster per resampling round
    sample_sizes: List[int] = required(ge=1, nonempty=True)
    # rounds per level (skipped if sample size <= 1)
    n_resamples: List[int] = required(ge=1, nonempty=True)
    # Lloyd iterations per k-means, per level
    n_iters: List[int] = required(ge=1, nonempty=True)
    resample_strategy: str = REQUIRED  # closest | random (points taken per cluster in a resampling round)
    sampling_strategy: str = REQUIRED  # leaf selection: r (random, the paper's best) | c (closest to the centroid)
    target_size: int = required(ge=1)  # T, the curated subset size
    seeds: List[int] = required(ge=0, nonempty=True)  # curation seeds = random-subset seeds
    tail_digits: List[int] = required(ge=0, le=9)  # the rarest pool digits (common/scenes.py)


@dataclass
class StudyConfig:
    """The same small CLIP trained at equal samples seen on the curated and on a random subset."""

    seeds: List[int] = required(ge=0, nonempty=True)  # seed s: curation seed s, random subset s, init s
    arms: List[str] = REQUIRED  # subsets trained on (+ flat)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class SslDataCurationConfig(RootConfig):
    features: Optional[str] = REQUIRED  # None: models/scene_clip/pool_image_embeddings.npy; full: DINOv2 features
    pool: Optional[str] = REQUIRED  # None: the shared captioned scenes' pool split; full: the web image pool
    curation: CurationConfig = field(default_factory=CurationConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
