"""Schema of papers/exposure_bias/params.yaml: the cross-paper comparison of the exposure-bias fixes."""

from dataclasses import dataclass
from typing import Optional

from common.config import RootConfig, required


@dataclass
class ExposureBiasConfig(RootConfig):
    es_b: Optional[float] = required(gt=0)  # None: the b* papers/epsilon_scaling selected on its sweep seeds
    # None: the (window, cutoff) papers/time_shift selected on its sweep seed
    ts_window: Optional[int] = required(ge=1)
    ts_cutoff: Optional[int] = required(ge=0)
