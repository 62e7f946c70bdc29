"""Schema of papers/residual_correction/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import REQUIRED, ConfigError, RootConfig, TrainConfig, UNetConfig, required


@dataclass
class SamplerConfig:
    """The corrected sampler: DDIM with eta = 0 (deterministic, so real images can be paired with it)."""

    spacing: str = REQUIRED  # ADM respacing, as for the other group-A papers
    clip_x0: bool = REQUIRED
    guidance_scale: float = required(ge=0)  # plain conditional sampling


@dataclass
class SimulateConfig:
    """Residual simulation: real x_0 -> DDIM inversion -> N-step sampler -> x_hat_0 (method.py)."""

    nfe: List[int] = required(ge=1, nonempty=True)  # one correction, conditioned on N
    inversion_steps: int = required(ge=1)
    # real images of the train split (class-balanced); pairs = num_pairs x len(nfe)
    num_pairs: int = required(ge=1)
    num_val: int = required(ge=1)  # images of the held-out split: the gap on unseen data (never trained on)
    batch_size: int = required(ge=1)
    seed: int = required(ge=0)  # which images


@dataclass
class CorrectionConfig:
    """r_phi: a small diffusers UNet whose time input is the NFE; trained with common/training.py."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class EvaluateConfig:
    nfe: List[int] = required(ge=1, nonempty=True)  # each must be in simulate.nfe
    num_samples: int = required(ge=1)
    seeds: List[int] = required(ge=0, nonempty=True)
    transfer_model: str = REQUIRED  # another DM on the same data ("" = skip the transfer test)
    transfer_nfe: List[int] = required(ge=1)


@dataclass
class ResidualCorrectionConfig(RootConfig):
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self):
        for key, grid in (("evaluate.nfe", self.evaluate.nfe), ("evaluate.transfer_nfe", self.evaluate.transfer_nfe)):
            extra = sorted(set(grid) - set(self.simulate.nfe))
            if extra:
                raise ConfigError(f"papers/residual_correction/params.yaml: bad parameter '{key}': NFE {extra} not in "
                                  f"simulate.nfe {list(self.simulate.nfe)} (the correction only knows those)")
