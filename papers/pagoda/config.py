"""Schema of papers/pagoda/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, EDMConfig, RootConfig, TrainConfig, UNetConfig, required


@dataclass
class TeacherConfig:
    """The low-resolution EDM teacher (PaGoDA's stage 1), trained once by this paper's `teacher` stage."""

    edm: EDMConfig = field(default_factory=EDMConfig)  # its preconditioning, training noise, sigma range
    downsample: int = required(ge=1)  # teacher resolution = data.resolution / downsample (16 -> 8)
    unet: UNetConfig = field(default_factory=UNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inversion_points: int = required(ge=2)  # Karras grid of the PF-ODE inversion (official: 40, Heun)
    num_inverted: int = required(ge=1)  # the first N training images are inverted (all: >= the split's size)
    flip: bool = REQUIRED  # also invert the h-flipped images (official: yes; digits: no, a mirrored digit is no digit)


@dataclass
class DecoderConfig:
    """The one-step decoder and its growth (PaGoDA's stages 2 and 3)."""

    arms: List[str] = required(nonempty=True)  # rec_gan (the paper) and rec (reconstruction only, claim c)
    train_seeds: List[int] = required(ge=0, nonempty=True)
    growth: List[int] = required(ge=2)  # output resolutions as multiples of the teacher's (official 2, 4, 8)
    growth_layers: int = required(ge=1)  # res blocks per new level (official num_res_blocks_high 2)
    gan_weight: float = required(ge=0)  # w at the teacher's resolution (official discriminator_weight 0.2)
    growth_gan_weight: float = required(ge=0)  # w in the growth stages (official 1.0)
    adaptive_clip: List[float] = required(gt=0)  # clip of lambda (official [0.01, 10])
    disc_t: int = required(ge=0)  # the timestep input of the teacher-initialised discriminator
    disc_resolution: int = required(ge=0)  # its input size (0: the images' own; official feature nets: 224)
    base: TrainConfig = field(default_factory=TrainConfig)  # at the teacher's resolution (seed: per train seed)
    grown: TrainConfig = field(default_factory=TrainConfig)  # each growth stage
    snapshots: List[int] = required(ge=1)  # EMA snapshots of the base stage for FID vs step


@dataclass
class EvalConfig:
    num_samples: int = required(ge=1)
    teacher_points: int = required(ge=2)  # the teacher's Heun grid (2 (n - 1) network calls)
    seed: int = required(ge=0)  # sampling seed (the same noise for the teacher and every decoder)
    grid: int = required(ge=1)  # samples per figure


@dataclass
class PaGoDAConfig(RootConfig):
    """The teacher (with its EDM constants), the decoders and the evaluation."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
