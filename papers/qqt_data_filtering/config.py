"""Schema of papers/qqt_data_filtering/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, ClipModelConfig, ClipTrainConfig, RootConfig, required


@dataclass
class BucketConfig:
    """Quality buckets: the pool sorted by the teacher's score, top n_buckets x size cut into buckets."""

    n_buckets: int = required(ge=1)
    size: int = required(ge=1)  # S, pairs per bucket (the paper: 12.8M = 10% of DataComp medium)


@dataclass
class StudyConfig:
    """What is trained: each bucket alone (the fits) and the top-p mixes at several budgets."""

    seeds: List[int] = required(ge=0, nonempty=True)  # training seeds (init + data order)
    # evaluations per bucket run, in passes over S
    fit_passes: List[int] = required(ge=1, nonempty=True)
    # samples seen for the mixes
    budgets: List[int] = required(ge=1, nonempty=True)
    metric: str = REQUIRED  # error = 1 - this score-card accuracy
    eval_retrieval: bool = REQUIRED  # also compute retrieval R@k at each evaluation (reported, not fitted)


@dataclass
class LawConfig:
    """Fitting Eq. 3-4 per bucket (official grid search, seeded) and predicting mixes (Eq. 5)."""

    normalizer: float = required(gt=0)  # n enters as a * n / normalizer (official 1e5)
    a_values: List[float] = required(gt=0, nonempty=True)  # shared a, chosen by least mean loss
    d_values: List[float] = required(ge=0, le=1, nonempty=True)  # fixed irreducible error(s), same rule
    b_range: List[float] = REQUIRED
    tau_range: List[float] = required(gt=0, nonempty=True)
    grid_points: int = required(ge=1)  # per axis
    shuffle_seed: int = required(ge=0)  # the official grid order is an unseeded shuffle
    max_points: int = required(ge=1)  # official cap on the shuffled grid
    tau_times_p: bool = REQUIRED  # official estimate_best_buckets passes tau_i * p for a mix of p pools
    sort_by_utility: bool = REQUIRED  # official: mixes take the pools with the most negative b first


@dataclass
class QQTConfig(RootConfig):
    pool: Optional[str] = REQUIRED  # None: the root `scenes` pool + `models/scene_clip` teacher scores; else a DataComp pool
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    buckets: BucketConfig = field(default_factory=BucketConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    law: LawConfig = field(default_factory=LawConfig)
