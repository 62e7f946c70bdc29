"""Size of the correction relative to the base network: parameters and FLOPs per network call.

FLOPs are PyTorch's own count (`torch.utils.flop_counter.FlopCounterMode`: 2 per multiply-add of
convolutions and matrix products; normalisations and activations are not counted), for one sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict

import torch

from common.models import count_parameters


def flops_per_call(call: Callable[[], object]) -> int:
    """FLOPs of one run of `call()` (a closure over the network and a batch-1 input)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


@dataclass
class SizeRatio:
    base_params: int
    correction_params: int
    base_flops: int  # one base-network call on one sample
    correction_flops: int  # one correction call on one sample

    @property
    def params_ratio(self) -> float:
        return self.correction_params / self.base_params

    @property
    def flops_ratio(self) -> float:
        return self.correction_flops / self.base_flops

    def sampling_overhead(self, nfe: int, calls_per_step: int = 1) -> float:
        """Extra compute of one correction call relative to an N-step sampler run (guidance: 2 calls/step)."""
        return self.correction_flops / (nfe * calls_per_step * self.base_flops)

    def to_dict(self) -> Dict[str, float]:
        return {**asdict(self), "params_ratio": self.params_ratio, "flops_ratio": self.flops_ratio}


def size_ratio(base: torch.nn.Module, base_call: Callable[[], object], correction: torch.nn.Module,
               correction_call: Callable[[], object]) -> SizeRatio:
    return SizeRatio(count_parameters(base), count_parameters(correction), flops_per_call(base_call),
                     flops_per_call(correction_call))
