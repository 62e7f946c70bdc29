"""Schema of papers/ddpm_ip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import BaseModelConfig, RootConfig


@dataclass
class EvalConfig:
    samplers: List[str] = field(default_factory=lambda: ["ddim", "ddpm"])
    nfe: List[int] = field(default_factory=lambda: [10, 20, 50])
    ddpm_nfe: List[int] = field(default_factory=lambda: [50])  # ancestral sampling is poor at few steps
    spacing: str = "linspace"  # ADM respacing
    num_samples: int = 400
    seeds: List[int] = field(default_factory=lambda: [1, 2])  # sampling seeds, per trained model
    guidance_scale: float = 1.0


@dataclass
class DdpmIpConfig(RootConfig):
    gamma: float = 0.1  # the paper's default (0.15 on CIFAR-10)
    train_seeds: List[int] = field(default_factory=lambda: [0, 1])  # each arm is trained once per seed
    model: BaseModelConfig = field(default_factory=BaseModelConfig)  # the network trained by both arms
    eval: EvalConfig = field(default_factory=EvalConfig)
