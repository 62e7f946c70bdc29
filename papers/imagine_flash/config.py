"""Schema of papers/imagine_flash/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import RootConfig, TrainConfig, required


@dataclass
class DistillConfig:
    """The student's recipe, the same for every arm (only the input construction and the loss differ)."""

    step_counts: List[int] = required(ge=1, nonempty=True)  # one student is trained for every k here (1..3)
    srl_shift: float = required(gt=0, le=1)                 # [R] tau = gamma(t) = round(srl_shift * t)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvalConfig:
    step_counts: List[int] = required(ge=1, nonempty=True)  # student steps k evaluated (with and without correction)
    num_samples: int = required(ge=1)                       # held-out pairs (noise, label) sampled per model
    curve_steps: List[int] = required(ge=1, nonempty=True)  # training steps whose EMA snapshots get an FID (curve)
    curve_k: List[int] = required(ge=1, nonempty=True)      # student steps of the FID-vs-training-step curve
    curve_samples: int = required(ge=1)                     # held-out pairs per curve point


@dataclass
class ImagineFlashConfig(RootConfig):
    train_seeds: List[int] = required(ge=0, nonempty=True)  # the replication unit: each arm trained once per seed
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
