"""Schema of papers/diffusion2gan/params.yaml (extends the root schema; unknown keys fail).

The teacher, its pairs, the autoencoder and the perceptual trunks are the shared substrate's (root params.yaml
`base_model`, `teacher_pairs`, `autoencoder`, `perceptual`; E-LatentLPIPS's augmentation preset is
`perceptual.augment`, the official 'bg' by default).
"""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, TrainConfig, required


@dataclass
class GanConfig:
    """The GAN arm: E-LatentLPIPS + weight x L_GAN, D from the teacher's encoder (common/gan.py)."""

    weight: float = required(ge=0)  # lambda_GAN
    loss: str = REQUIRED  # nonsaturating | hinge
    r1_gamma: float = required(ge=0)  # gamma of gamma/2 E||grad D(x_real)||^2 (0: off)
    t_d: int = required(ge=0)  # the timestep D's copied encoder is evaluated at


@dataclass
class OverfitConfig:
    """Appendix B / official overfitting_exp.py: fit a random latent to a few targets with Adam."""

    num_targets: int = required(ge=1)  # official: 4 images
    lr: float = required(gt=0)  # official: 1e-2 (Adam)
    steps: int = required(ge=1)  # official: 15,000
    monitor_every: int = required(ge=1)  # official: every 100 steps
    presets: List[str] = required(nonempty=True)  # E-LatentLPIPS variants beside plain LatentLPIPS
    seeds: List[int] = required(ge=0, nonempty=True)  # init seeds of the fitted latent (replication unit)
    l1: bool = REQUIRED  # official overfitting_exp.py calls with add_l1_loss=False


@dataclass
class EvalConfig:
    batch_size: int = required(ge=1)  # student calls per batch on the held-out pairs' noise


@dataclass
class BenchmarkConfig:
    """Loss-step cost (latent vs decode + pixel LPIPS) and one student call vs the teacher's sampler, interleaved."""

    batch_size: int = required(ge=1)
    rounds: int = required(ge=3)  # the replication unit of the cost claims
    repeats: int = required(ge=1)  # timed calls per round and contender
    warmup: int = required(ge=0)
    sample_batch: int = required(ge=1)  # noise batch of the student-vs-teacher timing


@dataclass
class StudentNetConfig:
    """The full profile's student: a diffusers UNet2DConditionModel (SD1.5 config); None on cpu / tiny, where the
    student is a copy of the shared base model."""

    block_out_channels: List[int] = required(ge=1, nonempty=True)
    layers_per_block: int = required(ge=1)
    cross_attention_dim: int = required(ge=1)
    attention_head_dim: int = required(ge=1)
    latent_channels: int = required(ge=1)
    sample_size: int = required(ge=1)
    text_tokens: int = required(ge=1)  # CLIP text length (77)


@dataclass
class Diffusion2GANConfig(RootConfig):
    arms: List[str] = required(nonempty=True)  # of method.ARMS
    train_seeds: List[int] = required(ge=0, nonempty=True)  # replication unit: same init, data order, draws per arm
    train: TrainConfig = field(default_factory=TrainConfig)
    snapshots: List[int] = required(ge=1)  # EMA snapshots evaluated for FID vs training step
    gan: GanConfig = field(default_factory=GanConfig)
    overfit: OverfitConfig = field(default_factory=OverfitConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    student_net: Optional[StudentNetConfig] = None
