"""Schema of papers/ssl_data_curation/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import ClipModelConfig, ClipTrainConfig, RootConfig, bounded, seed_list


@dataclass
class CurationConfig:
    """Hierarchical k-means with resampling (Alg. 1) + hierarchical balanced sampling (Alg. 2)."""

    # k_t, level 1 (leaves) first
    n_clusters: List[int] = bounded(factory=lambda: [1500, 300, 60, 12], ge=1, nonempty=True)
    # points per cluster per resampling round
    sample_sizes: List[int] = bounded(factory=lambda: [1, 3, 3, 3], ge=1, nonempty=True)
    # rounds per level (skipped if sample size <= 1)
    n_resamples: List[int] = bounded(factory=lambda: [1, 10, 10, 10], ge=1, nonempty=True)
    # Lloyd iterations per k-means, per level
    n_iters: List[int] = bounded(factory=lambda: [15, 50, 50, 50], ge=1, nonempty=True)
    resample_strategy: str = "closest"  # closest | random (points taken per cluster in a resampling round)
    sampling_strategy: str = "r"  # leaf selection: r (random, the paper's best) | c (closest to the centroid)
    target_size: int = bounded(6000, ge=1)  # T, the curated subset size
    seeds: List[int] = seed_list(0, 1, 2)  # curation seeds = random-subset seeds
    tail_digits: List[int] = bounded(factory=lambda: [7, 8, 9], ge=0, le=9)  # the rarest pool digits (common/scenes.py)


@dataclass
class StudyConfig:
    """The same small CLIP trained at equal samples seen on the curated and on a random subset."""

    seeds: List[int] = seed_list(0, 1, 2)  # seed s: curation seed s, random subset s, init s
    arms: List[str] = field(default_factory=lambda: ["random", "hierarchical"])  # subsets trained on (+ flat)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class SslDataCurationConfig(RootConfig):
    features: Optional[str] = None  # None: models/scene_clip/pool_image_embeddings.npy; full: DINOv2 features
    pool: Optional[str] = None  # None: the shared captioned scenes' pool split; full: the web image pool
    curation: CurationConfig = field(default_factory=CurationConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
