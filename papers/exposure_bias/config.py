"""Schema of papers/exposure_bias/params.yaml: the cross-paper comparison of the exposure-bias fixes."""

from dataclasses import dataclass
from typing import Optional

from common.config import RootConfig, bounded


@dataclass
class ExposureBiasConfig(RootConfig):
    es_b: Optional[float] = bounded(None, gt=0)  # None: the b* papers/epsilon_scaling selected on its sweep seeds
    # None: the (window, cutoff) papers/time_shift selected on its sweep seed
    ts_window: Optional[int] = bounded(None, ge=1)
    ts_cutoff: Optional[int] = bounded(None, ge=0)
