"""Schema of papers/exposure_bias/params.yaml: the cross-paper comparison of the exposure-bias fixes."""

from dataclasses import dataclass
from typing import Optional

from common.config import RootConfig


@dataclass
class ExposureBiasConfig(RootConfig):
    es_b: Optional[float] = None  # None: the b* papers/epsilon_scaling selected on its sweep seeds
    ts_window: Optional[int] = None  # None: the (window, cutoff) papers/time_shift selected on its sweep seed
    ts_cutoff: Optional[int] = None
