"""Schema of papers/one_step_comparison/params.yaml: Diffusion2GAN vs Imagine Flash vs PaGoDA on the shared teacher.

A null setting means "the paper's own choice" (`papers.one_step_comparison.evaluate.settings` reads it from that
paper's params / stage outputs); a value overrides it.
"""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class MethodsConfig:
    """Which trained student of each paper is compared (null: the paper's full method)."""

    diffusion2gan_arm: Optional[str] = REQUIRED  # null: the method arm of Diffusion2GAN's last claim (E-LatentLPIPS + GAN)
    imagine_flash_arm: Optional[str] = REQUIRED  # null: the method arm of Imagine Flash's claims (backward + SRL)
    imagine_flash_nc: Optional[bool] = REQUIRED  # null: noise correction on (the paper's inference, abstract (iii))
    # Imagine Flash is retrained here with its paper's recipe; null: the steps whose training compute equals
    # Diffusion2GAN's (selection.equal_compute_steps), a value overrides them
    imagine_flash_steps: Optional[int] = required(ge=1)


@dataclass
class PagodaConfig:
    """PaGoDA distilled here from the shared teacher at its own resolution (no growing)."""

    steps: Optional[int] = required(ge=1)  # null: Diffusion2GAN's train.steps (equal gradient steps)
    batch_size: Optional[int] = required(ge=1)  # null: Diffusion2GAN's train.batch_size (equal batch)
    num_inverted: Optional[int] = required(ge=1)  # null: Diffusion2GAN's train pairs (equal training examples)
    inversion_points: Optional[int] = required(ge=2)  # null: the most Heun points within the pairs' teacher calls
    checkpoint_every: int = required(ge=1)
    log_every: int = required(ge=1)


@dataclass
class TeacherSamplersConfig:
    """The shared teacher's own few-step samplers (one fixed model: no training seed)."""

    samplers: List[str] = required(nonempty=True)  # common.samplers.RULES names
    nfe: List[int] = required(ge=1, nonempty=True)
    spacing: str = REQUIRED  # trailing: the first step at t = T - 1 for every NFE (linspace puts NFE 1 at t = 0)


@dataclass
class BenchmarkConfig:
    """Seconds per sample of every sampler on the same noise batch, interleaved."""

    batch_size: int = required(ge=1)
    repeats: int = required(ge=1)  # timed calls per sampler and round; the median is kept
    rounds: int = required(ge=1)


@dataclass
class OneStepComparisonConfig(RootConfig):
    train_seeds: Optional[List[int]] = required(ge=0)  # null: papers/diffusion2gan's training seeds (its students are reused)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    pagoda: PagodaConfig = field(default_factory=PagodaConfig)
    teacher_samplers: TeacherSamplersConfig = field(default_factory=TeacherSamplersConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    batch_size: int = required(ge=1)  # sampling batch of the evaluation
