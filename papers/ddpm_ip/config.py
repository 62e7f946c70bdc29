"""Schema of papers/ddpm_ip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, NetworkConfig, RootConfig, required


@dataclass
class EvalConfig:
    samplers: List[str] = REQUIRED
    nfe: List[int] = required(ge=1)
    ddpm_nfe: List[int] = required(ge=1)  # ancestral sampling is poor at few steps
    spacing: str = REQUIRED  # ADM respacing
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)  # sampling seeds, per trained model
    guidance_scale: float = required(ge=0)


@dataclass
class DdpmIpConfig(RootConfig):
    gamma: float = required(ge=0)  # the paper's default (0.15 on CIFAR-10)
    train_seeds: List[int] = required(ge=0, nonempty=True)  # each arm is trained once per seed
    model: NetworkConfig = field(default_factory=NetworkConfig)  # the network trained by both arms
    eval: EvalConfig = field(default_factory=EvalConfig)
