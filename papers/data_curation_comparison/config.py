"""Schema of papers/data_curation_comparison/params.yaml: the data-curation comparison page."""

from dataclasses import dataclass
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class DataCurationComparisonConfig(RootConfig):
    # Kept fractions of the pool. None: the fractions the papers use, DFN's keep_fraction (papers/dfn student) and
    # Scaling (Down) CLIP's compare_pct / 100 (papers/scaling_down_clip quality): 0.15 and 0.40 on the cpu profile.
    fractions: Optional[List[float]] = required(gt=0, le=1)
    # Student seeds (the replication unit). None: papers/dfn's student seeds, whose students are reused.
    seeds: Optional[List[int]] = required(ge=0)
    # Which DFN filter scores the pool. None: the clean DFN (the smallest of papers/dfn filter.dirty_shares, 0.0).
    dfn_dirty_share: Optional[float] = required(ge=0, le=1)
    # Number of QQT quality buckets kept. None: per seed, the best mix of papers/qqt_data_filtering's fitted laws
    # (that seed's fits) at the student's samples seen (method.mix_errors, its own rule).
    qqt_buckets: Optional[int] = required(ge=1)
    catlip: bool = REQUIRED  # also train CatLIP's objective (image tower alone) on the full pool and on DFN's subset
