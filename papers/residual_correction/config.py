"""Schema of papers/residual_correction/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List

from common.config import ConfigError, RootConfig, TrainConfig, UNetConfig, bounded, budget_config, seed_list


@dataclass
class SamplerConfig:
    """The corrected sampler: DDIM with eta = 0 (deterministic, so real images can be paired with it)."""

    spacing: str = "linspace"  # ADM respacing, as for the other group-A papers
    clip_x0: bool = True
    guidance_scale: float = bounded(1.0, ge=0)  # plain conditional sampling


@dataclass
class SimulateConfig:
    """Residual simulation: real x_0 -> DDIM inversion -> N-step sampler -> x_hat_0 (method.py)."""

    nfe: List[int] = bounded(factory=lambda: [5, 10, 20], ge=1, nonempty=True)  # one correction, conditioned on N
    inversion_steps: int = bounded(30, ge=1)
    # real images of the train split (class-balanced); pairs = num_pairs x len(nfe)
    num_pairs: int = bounded(1000, ge=1)
    num_val: int = bounded(200, ge=1)  # images of the held-out split: the gap on unseen data (never trained on)
    batch_size: int = bounded(250, ge=1)
    seed: int = bounded(0, ge=0)  # which images


def _correction_unet() -> UNetConfig:
    return UNetConfig(block_out_channels=[8, 16], attention_levels=[False, False], layers_per_block=1,
                      num_classes=0, norm_num_groups=4, attention_head_dim=8)


def _correction_train() -> TrainConfig:
    return budget_config(600, warmup_steps=50, batch_size=64, lr=2e-3, ema_decay=0.99, checkpoint_every=200,
                         keep_checkpoints=1, log_every=20)


@dataclass
class CorrectionConfig:
    """r_phi: a small diffusers UNet whose time input is the NFE; trained with common/training.py."""

    unet: UNetConfig = field(default_factory=_correction_unet)
    train: TrainConfig = field(default_factory=_correction_train)


@dataclass
class EvaluateConfig:
    nfe: List[int] = bounded(factory=lambda: [5, 10, 20], ge=1, nonempty=True)  # each must be in simulate.nfe
    num_samples: int = bounded(500, ge=1)
    seeds: List[int] = seed_list(1, 2, 3)
    transfer_model: str = "base_model_weak"  # another DM on the same data ("" = skip the transfer test)
    transfer_nfe: List[int] = bounded(factory=lambda: [10], ge=1)


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
