"""Schema of papers/backbone_comparison/params.yaml: the transformer-backbone comparison page."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class BenchmarkConfig:
    """Training step time and activation memory of every backbone at its own training batch, timed interleaved
    in one run (the protocol of papers/maskdit's benchmark stage)."""

    rounds: int = required(ge=3)  # the replication unit of the speed claims: one interleaved round
    steps_per_round: int = required(ge=1)
    warmup: int = required(ge=0)


@dataclass
class BackboneComparisonConfig(RootConfig):
    # Training budgets in DiT-step FLOPs (root dit, batch dit.train.batch_size) at which Flag-DiT is kept. None: the
    # DiT snapshots of papers/maskdit's FID-vs-cost curve up to its equal-cost budget, i.e. eval.dit_steps below
    # cost_step, then cost_step (MaskDiT's budget; Flag-DiT's run ends there).
    budgets: Optional[List[int]] = required(ge=1)
    unet_sampler: str = REQUIRED  # a step rule of common.samplers.RULES: the shared UNet's sampler (a reference)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
