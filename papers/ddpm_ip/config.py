"""Schema of papers/ddpm_ip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import BaseModelConfig, RootConfig, bounded, seed_list


@dataclass
class EvalConfig:
    samplers: List[str] = field(default_factory=lambda: ["ddim", "ddpm"])
    nfe: List[int] = bounded(factory=lambda: [10, 20, 50], ge=1)
    ddpm_nfe: List[int] = bounded(factory=lambda: [50], ge=1)  # ancestral sampling is poor at few steps
    spacing: str = "linspace"  # ADM respacing
    num_samples: int = bounded(400, ge=1)
    seeds: List[int] = seed_list(1)  # sampling seeds, per trained model
    guidance_scale: float = bounded(1.0, ge=0)


@dataclass
class DdpmIpConfig(RootConfig):
    gamma: float = bounded(0.1, ge=0)  # the paper's default (0.15 on CIFAR-10)
    train_seeds: List[int] = seed_list(0, 1, 2)  # each arm is trained once per seed
    model: BaseModelConfig = field(default_factory=BaseModelConfig)  # the network trained by both arms
    eval: EvalConfig = field(default_factory=EvalConfig)
