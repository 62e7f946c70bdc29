"""Schema of papers/maskdit/params.yaml (extends the root schema; unknown keys fail).

The encoder, the EDM constants, the training recipe and the training seeds are the shared DiT baseline's
(root params.yaml `dit`): MaskDiT is compared with a plain DiT of the same width and depth, trained with
the same recipe, seed for seed.
"""

from dataclasses import dataclass, field
from typing import List

from common.config import BlocksConfig, RootConfig, required


@dataclass
class UnmaskConfig:
    """Unmask tuning: training continued at mask ratio 0 (official finetune config: lr 5e-5, half of 1e-4)."""

    steps: int = required(ge=1)
    lr_scale: float = required(gt=0)  # tuning lr = dit.train.lr x lr_scale
    ema_decay: float = required(ge=0, le=1)


@dataclass
class EvalConfig:
    num_samples: int = required(ge=1)
    num_steps: int = required(ge=1)  # EDM DPM-Solver++(2M) steps = network calls per sample and branch
    guidance_scales: List[float] = required(ge=1, nonempty=True)  # the first must be 1.0 (no guidance)
    dit_steps: List[int] = required(ge=1, nonempty=True)  # DiT snapshots (root dit.snapshots) on the FID-vs-cost curve
    seeds: List[int] = required(ge=0, nonempty=True)  # sampling seeds per trained model (averaged per unit)


@dataclass
class BenchmarkConfig:
    """Training step time and memory, DiT vs MaskDiT, timed interleaved in one run (stage `benchmark`)."""

    batch_size: int = required(ge=1)
    rounds: int = required(ge=3)  # the replication unit of the speed claim: one interleaved round
    steps_per_round: int = required(ge=1)
    warmup: int = required(ge=0)


@dataclass
class MaskDiTConfig(RootConfig):
    mask_ratio: float = required(gt=0, lt=1)  # r: share of tokens dropped before the encoder
    mae_coef: float = required(ge=0)  # lambda of L = L_DSM + lambda L_MAE
    decoder: BlocksConfig = field(default_factory=BlocksConfig)  # official: 8 x 512 x 16 heads, hard-coded
    cost_step: int = required(ge=1)  # MaskDiT's budget: the training FLOPs of this many DiT steps (a dit snapshot)
    ablation_fraction: float = required(gt=0, le=1)  # the MAE ablation compares both arms at this share of the steps
    unmask: UnmaskConfig = field(default_factory=UnmaskConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
