"""Typed, validated parameters: root `params.yaml` + a paper's `params.yaml` + profile + overrides.

Why: DVC tracks parameters by key in YAML files, researchers edit them by hand, and a
typo must not silently fall back to a default. Every file is merged into a dataclass
schema in OmegaConf struct mode, so an unknown or mistyped key fails with the key and
the file that holds it.

Resolution order (later wins):
  1. root `params.yaml`             (shared: profile, seed, paths, data, metric backbone, base model)
  2. `papers/<name>/params.yaml`    (the paper's own keys; its schema extends the root one)
  3. `profiles.<profile>` overlays  (root's, then the paper's) -- `profile` is the one switch:
        cpu  (default)  small real data on 2 CPU cores, minutes
        tiny            seconds; used by the end-to-end tests
        full            the paper's scale, for `accelerate launch` on GPUs
  4. command-line overrides in Hydra's grammar (`base_model.train.steps=10`).

Ranges. Numeric fields carry declarative bounds in their dataclass metadata (`bounded(10, ge=1)`,
`seed_list(0, 1, 2)`); `load_config` checks every one, recursively, after all files, overlays and
overrides are merged and before any stage does work, and fails with one line naming the params
file, the dotted key, the bad value and the allowed range:
    papers/new_knowledge/params.yaml: slick.n_prompts = -1 must be >= 1 (command line override 'slick.n_prompts=-1')

Errors the user can fix (a bad parameter, a missing or unreadable input) are `UserError`s; stage
entry points run through `common.cli.run_main`, which prints them as one line and exits 2.
`require` / `reading` are the one helper every loader of a shared artefact uses to say which
stage makes a missing or unreadable input.

Flags (every entry point, handled here): `--help`/`-h` prints the stage's help, `--cfg job` prints
the resolved config as YAML; both exit 0. `python -m common.config --check [papers/<name> ...]`
loads the config of every stage of the given pipelines and reports every error.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PROFILES = ("cpu", "tiny", "full")


# --------------------------------------------------------------------------- user errors
class UserError(Exception):
    """A problem the user causes and can fix (a parameter, a missing input): one line, no traceback.

    Stage entry points run `common.cli.run_main(main)`, which prints it and exits with status 2.
    """


class ConfigError(UserError, ValueError):
    """A parameter problem, with the key and the file it came from (`errors`: every problem found)."""

    def __init__(self, message: str, errors: Sequence[str] = ()):
        super().__init__(message)
        self.errors = list(errors) or [message]


class MissingInputError(UserError, FileNotFoundError):
    """An input another stage makes is absent; the message names the path and that stage."""


class UnreadableInputError(UserError, OSError):
    """An input exists but cannot be read (truncated, corrupt, wrong format); names the path and its stage."""


# --------------------------------------------------------------------------- bounds
BOUNDS_KEY = "bounds"


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric field (or of every element of a list / value of a dict field)."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    nonempty: bool = False  # list / dict fields: at least one element

    def admits(self, v) -> bool:
        if isinstance(v, float) and math.isnan(v):
            return False
        return not ((self.ge is not None and v < self.ge) or (self.gt is not None and v <= self.gt)
                    or (self.le is not None and v > self.le) or (self.lt is not None and v >= self.lt))

    def describe(self) -> str:
        lo = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        hi = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if lo and hi:
            return f"must be in {lo[0]}{_num(lo[1])}, {_num(hi[0])}{hi[1]}"
        if lo:
            return f"must be {'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
        if hi:
            return f"must be {'<=' if hi[1] == ']' else '<'} {_num(hi[0])}"
        return "is not allowed"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def bounded(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge=None, gt=None, le=None,
            lt=None, nonempty: bool = False):
    """A dataclass field with a checked range: `n: int = bounded(10, ge=1)`, `p: float = bounded(0.5, ge=0, le=1)`,
    `xs: List[int] = bounded(factory=lambda: [1, 2], ge=1, nonempty=True)` (bounds apply to every element)."""
    return field(default=default, default_factory=factory,
                 metadata={BOUNDS_KEY: Bounds(ge=ge, gt=gt, le=le, lt=lt, nonempty=nonempty)})


# A field whose value lives in params.yaml only (each value written once: tests/common/test_config.py); loading
# fails with the key's name if no params file sets it. OmegaConf's "???".
REQUIRED = "???"


def required(*, ge=None, gt=None, le=None, lt=None, nonempty: bool = False):
    """A field without a dataclass default, set by the paper's params.yaml: `size: int = required(ge=1)`."""
    return bounded(REQUIRED, ge=ge, gt=gt, le=le, lt=lt, nonempty=nonempty)


def unit(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, nonempty: bool = False):
    """A probability, share or fraction: every value in [0, 1]."""
    return bounded(default, factory=factory, ge=0, le=1, nonempty=nonempty)


def seed_list(*values: int):
    """A non-empty list of non-negative seeds, defaulting to `values`."""
    return bounded(factory=lambda: list(values), ge=0, nonempty=True)


def bounds_of(cls: type, name: str) -> Optional[Bounds]:
    """The bounds of field `name` of dataclass `cls`; a subclass that re-declares a field only to change its
    default (e.g. `steps: int = 1000`) keeps the bounds its base class declared."""
    for klass in getattr(cls, "__mro__", ()):
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and BOUNDS_KEY in f.metadata:
            return f.metadata[BOUNDS_KEY]
    return None


def _check_value(key: str, value, b: Bounds) -> Iterator[Tuple[str, Any, str]]:
    """(dotted key, bad value, rule) for every violation in `value` (a number, or nested lists / dicts of them)."""
    if value is None or isinstance(value, (bool, str)):
        return  # Optional fields left unset; non-numeric values are the type checker's business
    if isinstance(value, (list, tuple)):
        if b.nonempty and not value:
            yield key, [], "must not be empty"
        for i, v in enumerate(value):
            yield from _check_value(f"{key}[{i}]", v, dataclasses.replace(b, nonempty=False))
    elif isinstance(value, dict):
        if b.nonempty and not value:
            yield key, {}, "must not be empty"
        for k, v in value.items():
            yield from _check_value(f"{key}.{k}", v, dataclasses.replace(b, nonempty=False))
    elif isinstance(value, (int, float)) and not b.admits(value):
        yield key, value, b.describe()


def range_violations(node, prefix: str = "") -> Iterator[Tuple[str, Any, str]]:
    """Walk a structured config (DictConfig of a dataclass schema, or a dataclass instance) and yield
    (dotted key, value, rule) for every value outside its declared bounds."""
    typ = OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)
    if not dataclasses.is_dataclass(typ):
        return
    for f in dataclasses.fields(typ):
        if isinstance(node, DictConfig):
            if OmegaConf.is_missing(node, f.name):
                continue
            child = node[f.name]
        else:
            child = getattr(node, f.name)
        key = f"{prefix}{f.name}"
        nested = OmegaConf.get_type(child) if isinstance(child, DictConfig) else type(child)
        if dataclasses.is_dataclass(nested):  # a section: recurse
            yield from range_violations(child, key + ".")
            continue
        b = bounds_of(typ, f.name)
        if b is None:
            continue
        if isinstance(child, (DictConfig, ListConfig)):
            child = OmegaConf.to_container(child, resolve=True)
        yield from _check_value(key, child, b)


# --------------------------------------------------------------------------- schema
@dataclass
class PathsConfig:
    data: str = REQUIRED  # prepared datasets (root dvc.yaml outputs)
    models: str = REQUIRED  # shared trained networks (metric backbone, base model)
    runs: str = REQUIRED  # per-paper working outputs (samples, metrics JSON, checkpoints)
    reports: str = REQUIRED  # generated, committed reports


@dataclass
class TrackingConfig:
    enabled: bool = REQUIRED
    uri: Optional[str] = REQUIRED  # default: sqlite:///<repo root>/mlflow.db


@dataclass
class DataConfig:
    name: str = REQUIRED  # registry key, see common/data.py
    resolution: int = required(ge=1)
    num_heldout: int = required(ge=1)  # held-out split: FID reference and classifier test set
    source: Optional[str] = None  # full-profile datasets: local path or hub id for `datasets`


@dataclass
class ClassifierConfig:
    """The metric backbone: a small CNN classifier whose penultimate layer replaces Inception."""

    channels: List[int] = required(ge=1, nonempty=True)
    feature_dim: int = required(ge=1)
    steps: int = required(ge=1)
    batch_size: int = required(ge=1)
    lr: float = required(gt=0)
    seed: int = required(ge=0)


@dataclass
class UNetConfig:
    """diffusers UNet2DModel, one entry per resolution level in the lists."""

    block_out_channels: List[int] = required(ge=1, nonempty=True)
    attention_levels: List[bool] = REQUIRED
    layers_per_block: int = required(ge=1)
    num_classes: int = required(ge=0)  # 0: unconditional; otherwise a null class is added for guidance
    dropout: float = unit(0.0)
    norm_num_groups: int = required(ge=1)
    attention_head_dim: int = required(ge=1)
    resnet_time_scale_shift: str = "default"  # "scale_shift" = ADM's use_scale_shift_norm
    resblock_updown: bool = False  # ADM's resblock_updown (BigGAN-style resampling)
    learn_sigma: bool = False  # ADM: 2x output channels (eps and variance interpolation)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = required(ge=1)
    beta_schedule: str = REQUIRED  # linear | squaredcos_cap_v2 (cosine, ADM) | scaled_linear (Stable Diffusion)
    beta_start: float = required(ge=0, le=1)
    beta_end: float = required(ge=0, le=1)


@dataclass
class TrainConfig:
    steps: int = required(ge=1)  # optimizer steps
    batch_size: int = required(ge=1)  # global batch per optimizer step (split over processes)
    grad_accum: int = bounded(1, ge=1)
    lr: float = required(gt=0)
    warmup_steps: int = required(ge=0)
    lr_schedule: str = REQUIRED  # any diffusers.optimization scheduler name
    weight_decay: float = bounded(0.0, ge=0)
    grad_clip: float = bounded(1.0, ge=0)
    ema_decay: float = required(ge=0, le=1)
    cond_dropout: float = required(ge=0, le=1)  # classifier-free guidance training
    checkpoint_every: int = bounded(200, ge=1)
    keep_checkpoints: int = bounded(2, ge=0)
    mixed_precision: str = "no"
    seed: int = required(ge=0)
    log_every: int = bounded(20, ge=1)


# --------------------------------------------------------------------------- a run's configuration from its budget
WARMUP_MAX_FRACTION = 0.1  # the warm-up takes at most this share of a run's steps (unless a caller says otherwise)


def warmup_for(steps: int, warmup_steps: int, max_fraction: float = WARMUP_MAX_FRACTION) -> int:
    """The one warm-up rule: the requested `warmup_steps`, at most floor(max_fraction * steps), so a short
    run (a tiny profile, a small budget) is not all warm-up. max_fraction = 0.1 is steps // 10, 0.2 is steps // 5."""
    return min(int(warmup_steps), int(steps * max_fraction))


def budget_config(steps: int, *, warmup_steps: int = 0, max_warmup_fraction: float = WARMUP_MAX_FRACTION,
                  checkpoint_every: Optional[int] = None, log_every: Optional[int] = None, cond_dropout: float = 0.0,
                  ema_decay: float = 0.0, **fields) -> TrainConfig:
    """The `TrainConfig` of a run whose length is computed (from samples seen, epochs, a data size): `steps`
    optimizer steps, the warm-up by `warmup_for`, checkpoints and log lines at most `steps` apart (a run
    shorter than its checkpoint interval still saves its last step), no condition dropout (a run without
    classifier-free guidance) and no EMA unless given; `fields`: the other TrainConfig fields, of which the
    ones without a default (lr, batch_size, lr_schedule, seed) must be given."""
    base = TrainConfig
    cfg = TrainConfig(steps=steps, warmup_steps=warmup_for(steps, warmup_steps, max_warmup_fraction),
                      checkpoint_every=min(base.checkpoint_every if checkpoint_every is None else checkpoint_every,
                                           steps),
                      log_every=min(base.log_every if log_every is None else log_every, steps),
                      cond_dropout=cond_dropout, ema_decay=ema_decay, **fields)
    unset = [f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) == REQUIRED]
    if unset:
        raise TypeError(f"budget_config: give {', '.join(unset)} (TrainConfig fields without a default)")
    return cfg


def steps_for(samples: float, batch_size: int) -> int:
    """Optimizer steps that see at least `samples` samples at `batch_size` per step (at least one)."""
    return max(1, math.ceil(samples / batch_size))



@dataclass
class BaseEvalConfig:
    num_samples: int = required(ge=1)
    nfe: int = required(ge=1)
    guidance_scale: float = required(ge=0)
    weak_fraction: float = required(gt=0, le=1)  # the "weak model" is the same run at this fraction of the steps
    seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class NetworkConfig:
    """A diffusion network and how it is trained (a paper that trains its own, e.g. DDPM-IP's two arms)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class BaseModelConfig(NetworkConfig):
    """The shared base model: its network, plus how evaluate_base_model samples it."""

    eval: BaseEvalConfig = field(default_factory=BaseEvalConfig)


@dataclass
class KnowledgeConfig:
    """Knowledge base of real facts and the pretraining corpus stating a subset (common/knowledge.py)."""

    relations: List[str] = required(nonempty=True)
    max_entities: int = required(ge=0)  # > 0: keep the first n facts per relation (tiny runs)
    # train / dev / test per relation
    split: List[float] = required(gt=0, nonempty=True)
    # mentions in the corpus
    frequencies: List[int] = required(ge=0, nonempty=True)
    # share of facts per bucket
    frequency_weights: List[float] = required(ge=0, nonempty=True)
    qa_share: float = required(ge=0, le=1)  # share of mentions written as "Q: ... A: ..." lines (the probe format)
    lexicon_mentions: int = required(ge=0)  # neutral typed-list mentions of every name (no fact stated)
    lines_per_doc: int = required(ge=1)
    seed: int = required(ge=0)


@dataclass
class LMModelConfig:
    """A `transformers` GPT-2 trained from scratch (common/lm.py)."""

    n_layer: int = required(ge=1)
    n_embd: int = required(ge=1)
    n_head: int = required(ge=1)
    n_positions: int = required(ge=1)
    dropout: float = required(ge=0, le=1)


@dataclass
class LMTrainConfig:
    seq_len: int = required(ge=1)  # packed training windows (few-shot probes must fit in them)
    epochs: float = required(gt=0)  # passes over the corpus: a fact of frequency k is seen k x epochs times
    batch_size: int = required(ge=1)
    lr: float = required(gt=0)
    warmup_steps: int = required(ge=0)
    lr_schedule: str = REQUIRED
    weight_decay: float = required(ge=0)
    grad_clip: float = bounded(1.0, ge=0)
    checkpoint_every: int = bounded(200, ge=1)
    keep_checkpoints: int = bounded(1, ge=0)
    seed: int = required(ge=0)
    log_every: int = bounded(20, ge=1)


@dataclass
class KnowledgeLMConfig:
    model: LMModelConfig = field(default_factory=LMModelConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)


@dataclass
class ScenesConfig:
    """Captioned scenes of real MNIST digits with graded caption noise (common/scenes.py)."""

    source: str = REQUIRED  # a common.data source of digit images with labels (tiny: sklearn digits)
    heldout_digits: int = required(ge=1)  # MNIST digits reserved for the test scenes
    n_hq: int = required(ge=1)  # clean, uniform digit classes
    n_pool: int = required(ge=1)  # mixed quality, long-tailed digit classes
    n_probe_train: int = required(ge=1)  # clean single-digit scenes for linear probes
    n_test: int = required(ge=1)  # clean scenes from held-out digits
    pool_noise: Dict[str, float] = unit(factory=lambda: dict.fromkeys(("wrong_colour", "wrong_digit", "unrelated"), REQUIRED))
    tail_ratio: float = required(gt=0)  # pool: digit 0 is tail_ratio x as frequent as digit 9
    # 1, 2, 3 digits (hq, pool)
    count_probs: List[float] = required(ge=0, nonempty=True)
    # half single-digit scenes
    test_count_probs: List[float] = required(ge=0, nonempty=True)
    seed: int = required(ge=0)


@dataclass
class ClipModelConfig:
    """A small CLIP dual encoder from open_clip's blocks (common/clip.py)."""

    embed_dim: int = required(ge=1)
    image_tower: str = REQUIRED  # cnn (common.clip.SmallCNN) | resnet (open_clip ModifiedResNet) | vit (open_clip ViT)
    cnn_widths: List[int] = required(ge=1, nonempty=True)
    resnet_layers: List[int] = bounded(factory=lambda: [1, 1, 1, 1], ge=1, nonempty=True)
    resnet_width: int = bounded(16, ge=1)
    vit_width: int = bounded(96, ge=1)
    vit_layers: int = bounded(4, ge=1)
    vit_patch: int = bounded(8, ge=1)
    vit_head_width: int = bounded(32, ge=1)
    text_width: int = required(ge=1)
    text_layers: int = required(ge=1)
    text_heads: int = required(ge=1)
    context_length: int = required(ge=1)


@dataclass
class ClipTrainConfig:
    samples: int = required(ge=1)  # samples seen (steps = samples / batch_size)
    batch_size: int = required(ge=1)
    lr: float = required(gt=0)
    warmup_steps: int = required(ge=0)
    lr_schedule: str = REQUIRED
    weight_decay: float = required(ge=0)  # Scaling (Down) CLIP's value
    grad_clip: float = bounded(1.0, ge=0)
    checkpoint_every: int = bounded(100, ge=1)
    keep_checkpoints: int = bounded(1, ge=0)
    seed: int = required(ge=0)
    log_every: int = bounded(10, ge=1)


@dataclass
class SceneClipConfig:
    """The shared small CLIP trained on the clean `hq` split: teacher scores and embeddings."""

    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class BlocksConfig:
    """A stack of DiT blocks: width, depth and attention heads (the DiT's, or MaskDiT's decoder)."""

    hidden_size: int = required(ge=1)
    depth: int = required(ge=1)
    num_heads: int = required(ge=1)


@dataclass
class DitNetConfig(BlocksConfig):
    """A class-conditional DiT (common/dit.py: diffusers' DiTTransformer2DModel); labels 0..K-1 plus a null label."""

    patch_size: int = required(ge=1)  # 16x16 images, patch 2: 64 tokens
    num_classes: int = required(ge=1)


@dataclass
class EDMConfig:
    """EDM's preconditioning, training noise and sampler range (common/edm.py)."""

    sigma_data: float = required(gt=0)
    p_mean: float = required(ge=-10, le=10)  # ln sigma ~ N(p_mean, p_std^2) in training (sigma within e^+-10)
    p_std: float = required(gt=0)
    sigma_min: float = required(gt=0)
    sigma_max: float = required(gt=0)
    rho: float = required(gt=0)  # Karras sampling schedule


@dataclass
class DitConfig:
    """The shared plain-DiT baseline (root stage train_dit): one run per training seed, EMA snapshots kept at
    `snapshots` so papers compare against it at equal training cost (a constant-LR run's EMA at step s is the
    final EMA of an s-step run with the same seed)."""

    net: DitNetConfig = field(default_factory=DitNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    train_seeds: List[int] = required(ge=0, nonempty=True)
    snapshots: List[int] = required(ge=1)  # EMA snapshot steps besides the last one


@dataclass
class TeacherPairsConfig:
    """The base model's deterministic ODE pairs for the one-step distillation papers (root stage teacher_pairs)."""

    num_train: int = required(ge=1)
    num_heldout: int = required(ge=1)
    nfe: int = required(ge=1)  # DDIM (eta 0) steps of the teacher, linspace spacing
    guidance_scale: float = required(ge=0)  # 1 = plain conditional (one network call per step)
    clip_x0: bool = REQUIRED  # the shared sampler's x0 clipping to [-1, 1]
    train_seed: int = required(ge=0)  # sampling seed of the train split (per-sample seeds derive from it)
    heldout_seed: int = required(ge=0)  # ... of the held-out split (a different seed: no shared x_T)
    batch_size: int = bounded(250, ge=1)  # samples per sampler call (the pairs do not depend on it)


@dataclass
class AutoencoderNetConfig:
    """A diffusers AutoencoderKL: one Down/UpEncoderBlock2D per entry; len - 1 halvings of the resolution."""

    block_out_channels: List[int] = required(ge=1, nonempty=True)
    layers_per_block: int = required(ge=1)
    latent_channels: int = required(ge=1)
    norm_num_groups: int = required(ge=1)


@dataclass
class AutoencoderConfig:
    """The shared AutoencoderKL (root stage train_autoencoder): LatentLPIPS's latent space, a standard-VAE baseline."""

    net: AutoencoderNetConfig = field(default_factory=AutoencoderNetConfig)
    kl_weight: float = required(ge=0)  # weight of KL(q(z|x) || N(0, I)) next to the L1 reconstruction
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TrunkConfig:
    """A perceptual trunk (common.perceptual.TapNet): one entry per tapped slice."""

    channels: List[int] = required(ge=1, nonempty=True)
    convs: List[int] = required(ge=1, nonempty=True)  # conv-BN-ReLU layers per slice
    pools: List[bool] = REQUIRED  # whether a slice ends in a 2x2 max-pool (else Identity)


@dataclass
class PerceptualConfig:
    """Perceptual distances (common/perceptual.py) and their trunks (root stage train_perceptual)."""

    pixel_backbone: str = REQUIRED  # auto | digits-cnn | alex | vgg (alex / vgg: cached ImageNet weights only)
    augment: str = REQUIRED  # E-LatentLPIPS preset: b, g, c, o, co, bg, bgc, bgco (official default bg)
    latent_l1: bool = REQUIRED  # E-LatentLPIPS adds mean |x0 - x1| of the latents (official add_l1_loss)
    pixel: TrunkConfig = field(default_factory=TrunkConfig)
    latent: TrunkConfig = field(default_factory=TrunkConfig)
    train: TrainConfig = field(default_factory=TrainConfig)  # both trunks: class-supervised on the train split


@dataclass
class PatchesConfig:
    """Real image patches (common/image_patches.py, root stage prepare_patches): seeded crops of the skimage.data
    photographs, split by region of each photo, plus the LFW faces."""

    size: int = required(ge=8)  # HR patch side in pixels
    train_per_photo: int = required(ge=1)
    heldout_per_photo: int = required(ge=1)
    heldout_fraction: float = required(gt=0, lt=1)  # the right-most share of each photo's width: held-out crops only
    min_std: float = required(ge=0)  # reject near-flat crops: std of the uint8 values below this
    faces: bool = REQUIRED  # write the `faces` split (LFW, grey, resized to `size`)
    seed: int = required(ge=0)


@dataclass
class PatchTrunksConfig:
    """The RGB trunks of lpips[patches-cnn] and rfid[patches-cnn] (common/patch_trunks.py, root stage
    train_patch_trunks), class-supervised on the `train` patches; two trunks so that a paper's LPIPS loss is
    never its rFID's feature space."""

    lpips: TrunkConfig = field(default_factory=TrunkConfig)  # objective: which photo a crop comes from
    fid: TrunkConfig = field(default_factory=TrunkConfig)  # objective: which photo and which 90-degree rotation
    train: TrainConfig = field(default_factory=TrainConfig)  # both trunks; train.seed seeds the LPIPS trunk
    fid_seed: int = required(ge=0)  # the rFID trunk's seed (its own initialisation and batches)


@dataclass
class T2IUNetConfig:
    """diffusers UNet2DConditionModel at 32x32 RGB (common/t2i.py): one level per block_out_channels entry."""

    block_out_channels: List[int] = required(ge=1, nonempty=True)
    cross_attention: List[bool] = REQUIRED  # per level: a CrossAttn block (True) or a plain one
    layers_per_block: int = required(ge=1)
    attention_heads: int = required(ge=1)  # diffusers' attention_head_dim (the number of heads)
    norm_num_groups: int = required(ge=1)


@dataclass
class T2IEvalConfig:
    """The stage's sanity check: samples of held-out test captions through the shared sampler."""

    num_samples: int = required(ge=1)
    nfe: int = required(ge=1)
    method: str = REQUIRED  # a common.samplers.RULES step rule
    guidance_scale: float = required(ge=0)
    seed: int = required(ge=0)


@dataclass
class T2IConfig:
    """The shared text-conditional diffusion model on the captioned scenes (root stage train_t2i)."""

    unet: T2IUNetConfig = field(default_factory=T2IUNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pool_scenes: int = required(ge=0)  # pool scenes added to hq, with their TRUE captions (never a noisy one)
    synonym_rate: float = required(ge=0, le=1)  # per word: a synonym replaces it with this probability
    eval: T2IEvalConfig = field(default_factory=T2IEvalConfig)


@dataclass
class RewardModelConfig:
    """The Bradley-Terry reward model on frozen scene-CLIP features (root stage train_reward_model)."""

    train_pairs: int = required(ge=1)  # preference pairs from TRAINING digits
    test_pairs: int = required(ge=1)  # from the held-out digits
    hidden: int = required(ge=1)  # MLP head width
    steps: int = required(ge=1)
    batch_size: int = required(ge=1)
    lr: float = required(gt=0)
    weight_decay: float = required(ge=0)
    seed: int = required(ge=0)


@dataclass
class RootConfig:
    profile: str = REQUIRED
    seed: int = required(ge=0)
    paths: PathsConfig = field(default_factory=PathsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    knowledge_lm: KnowledgeLMConfig = field(default_factory=KnowledgeLMConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    scene_clip: SceneClipConfig = field(default_factory=SceneClipConfig)
    dit: DitConfig = field(default_factory=DitConfig)
    teacher_pairs: TeacherPairsConfig = field(default_factory=TeacherPairsConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    patches: PatchesConfig = field(default_factory=PatchesConfig)
    patch_trunks: PatchTrunksConfig = field(default_factory=PatchTrunksConfig)
    t2i: T2IConfig = field(default_factory=T2IConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)


C = TypeVar("C", bound=RootConfig)


# --------------------------------------------------------------------------- paths
def repo_root() -> Path:
    """The repository root: DVC's `DVC_ROOT` inside a stage, else the nearest parent with `params.yaml` + `common/`."""
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "params.yaml").is_file() and (d / "common").is_dir():
            return d
    raise ConfigError(f"cannot find the repository root (a folder with params.yaml and common/) above {here}")


# --------------------------------------------------------------------------- loading
def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"parameter file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameters at the top level")
    return data


def _merge(cfg, data: dict, where: str):
    """Merge `data` into the struct-mode `cfg`, turning OmegaConf errors into one naming key and file."""
    try:
        return OmegaConf.merge(cfg, data)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        msg = str(e).splitlines()[0]
        raise ConfigError(f"{where}: bad parameter '{key}': {msg}") from None


def _parse_overrides(overrides: Sequence[str]) -> List[Tuple[str, dict]]:
    """Command-line overrides in Hydra's override grammar (`a.b=1`, `a.c=[1,2]`) as (text, nested dict)."""
    if not overrides:
        return []
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # hydra raises its own OverrideParseException
        msg = " ".join(str(e).split())
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {msg} (see --help)") from None
    out = []
    for ov in parsed:
        key, value = ov.key_or_group, ov.value()
        if ov.is_delete() or ov.is_add():
            raise ConfigError(f"command line: '{ov.input_line}': only plain `key=value` overrides are supported")
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        out.append((ov.input_line, nested))
    return out


def _apply_overrides(cfg, overrides: Sequence[str]):
    """Apply command-line overrides written in Hydra's override grammar (`a.b=1`, `a.c=[1,2]`)."""
    for line, nested in _parse_overrides(overrides):
        cfg = _merge(cfg, nested, f"command line override '{line}'")
    return cfg


def _profile_of(cfg, overrides: Sequence[str]) -> str:
    for o in overrides:
        if o.startswith("profile="):
            return o.split("=", 1)[1]
    return cfg.profile


# --------------------------------------------------------------------------- flags (--help, --cfg job)
HELP_FLAGS = ("-h", "--help")
CFG_FLAGS = ("-c", "--cfg")
CFG_KINDS = ("job", "all")


def split_flags(argv: Sequence[str]) -> Tuple[Dict[str, str], List[str]]:
    """({'help': '1'} / {'cfg': 'job'}, remaining overrides) of a stage's argv; unknown `-x` options fail."""
    flags: Dict[str, str] = {}
    rest: List[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a in HELP_FLAGS:
            flags["help"] = "1"
        elif a in CFG_FLAGS or a.startswith("--cfg="):
            kind = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            i += 0 if "=" in a else 1
            if kind not in CFG_KINDS:
                raise ConfigError(f"command line: --cfg takes one of {list(CFG_KINDS)}, got {kind!r} (see --help)")
            flags["cfg"] = kind
        elif a.startswith("-"):
            raise ConfigError(f"command line: unknown option {a!r}: a stage takes `key=value` overrides, "
                              f"--help or --cfg job")
        else:
            rest.append(a)
        i += 1
    return flags, rest


def _caller() -> Tuple[str, Optional[str]]:
    """(module name, module docstring) of the code that called into this module (the stage entry point)."""
    f = sys._getframe(1)
    while f is not None and f.f_globals is globals():
        f = f.f_back
    if f is None:
        return "?", None
    g = f.f_globals
    name, spec = g.get("__name__", "?"), g.get("__spec__")
    if name == "__main__" and spec is not None and getattr(spec, "name", None):
        name = spec.name
    return name, g.get("__doc__")


# --------------------------------------------------------------------------- where a value comes from
def _has_key(data, parts: Sequence[str]) -> bool:
    for p in parts:
        if not isinstance(data, dict) or p not in data:
            return False
        data = data[p]
    return True


def _key_parts(key: str) -> List[str]:
    """`study.epochs[2]` -> ['study', 'epochs'] (a list is set as a whole)."""
    return [p.split("[", 1)[0] for p in key.split(".")]


@dataclass
class _Source:
    label: str  # "params.yaml", "papers/x/params.yaml (profiles.tiny)", "command line override 'a=1'"
    data: dict
    file: Optional[str]  # the params file, None for a command-line override


def _where(key: str, sources: Sequence[_Source], default_file: str) -> Tuple[str, Optional[str]]:
    """(the params file (and overlay) that holds `key`, the command-line override that set it last, if any)."""
    parts = _key_parts(key)
    file_label, cli = None, None
    for src in reversed(sources):  # later sources win, as in the merge
        if _has_key(src.data, parts):
            if src.file is None:
                cli = cli or src.label
            else:
                file_label = src.label
                break
    return file_label or default_file, cli


def _range_errors(cfg, schema: type, sources: Sequence[_Source], root_file: str,
                  paper_file: Optional[str]) -> List[str]:
    root_keys = {f.name for f in dataclasses.fields(RootConfig)}
    errors = []
    for key, value, rule in range_violations(cfg):
        top = _key_parts(key)[0]
        default_file = root_file if (top in root_keys or not paper_file) else paper_file
        where, cli = _where(key, sources, f"{default_file} (default of {schema.__name__})")
        errors.append(f"{where}: {key} = {value} {rule}" + (f" ({cli})" if cli else ""))
    return errors


# --------------------------------------------------------------------------- load
def load_config(
    schema: Type[C] = RootConfig, paper: Optional[str] = None, overrides: Sequence[str] = (), root: Optional[Path] = None
) -> C:
    """Load, validate and return the typed configuration for the root stages or one paper.

    `overrides` is the stage's argv: Hydra-grammar `key=value` overrides, plus `--help`/`-h` (print the
    stage's help, exit 0) and `--cfg job` (print the resolved config as YAML, exit 0).
    """
    flags, overrides = split_flags(overrides)
    root = Path(root) if root else repo_root()
    files = [root / "params.yaml"]
    if paper:
        files.append(root / "papers" / paper / "params.yaml")
    rel = {f: str(f.relative_to(root)) for f in files}

    if "help" in flags:
        from common.cli import print_help

        module, doc = _caller()
        print_help(module, doc, schema, [rel[f] for f in files], root, paper)
        raise SystemExit(0)

    cfg = OmegaConf.structured(schema)
    OmegaConf.set_struct(cfg, True)
    raw = {}
    sources: List[_Source] = []
    for f in files:
        raw[f] = _read_yaml(f)
        body = {k: v for k, v in raw[f].items() if k != "profiles"}
        cfg = _merge(cfg, body, rel[f])
        sources.append(_Source(rel[f], body, rel[f]))

    profile = _profile_of(cfg, overrides)
    known = set(PROFILES) | {p for d in raw.values() for p in (d.get("profiles") or {})}
    if profile not in known:
        raise ConfigError(
            f"params.yaml: bad parameter 'profile': {profile!r} is not one of {sorted(known)}"
        )
    for f, data in raw.items():
        overlay = (data.get("profiles") or {}).get(profile)
        if overlay:
            label = f"{rel[f]} (profiles.{profile})"
            cfg = _merge(cfg, overlay, label)
            sources.append(_Source(label, overlay, rel[f]))
    for line, nested in _parse_overrides(overrides):
        label = f"command line override '{line}'"
        cfg = _merge(cfg, nested, label)
        sources.append(_Source(label, nested, None))
    cfg.profile = profile

    errors = _range_errors(cfg, schema, sources, rel[files[0]], rel[files[1]] if paper else None)
    if errors:
        more = f" (and {len(errors) - 1} more: " + "; ".join(errors[1:]) + ")" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more, errors)
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{', '.join(rel[f] for f in files)}: {e}") from None
    if "cfg" in flags:
        sys.stdout.write(OmegaConf.to_yaml(cfg))
        sys.stdout.flush()
        raise SystemExit(0)
    return obj


# --------------------------------------------------------------------------- inputs made by other stages
def _display(path: Path) -> str:
    """`path` relative to the repository root when inside it, else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(repo_root()))
    except (ValueError, ConfigError, OSError):
        return str(path)


def producing_stage(path: Path) -> Optional[str]:
    """`<dvc.yaml>:<stage>` whose outs contain `path` (root dvc.yaml and papers/*/dvc.yaml), or None."""
    try:
        root = repo_root()
        target = Path(path).resolve().relative_to(root)
    except (ValueError, ConfigError, OSError):
        return None
    best: Tuple[int, Optional[str]] = (-1, None)
    for dvc_file in [root / "dvc.yaml", *sorted((root / "papers").glob("*/dvc.yaml"))]:
        try:
            stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages") or {}
        except (OSError, yaml.YAMLError):
            continue
        for name, st in stages.items():
            if not isinstance(st, dict):
                continue
            wdir = Path(os.path.normpath(dvc_file.parent.relative_to(root) / str(st.get("wdir", "."))))
            for kind in ("outs", "metrics", "plots"):
                for out in st.get(kind) or []:
                    out = next(iter(out)) if isinstance(out, dict) else out
                    if not isinstance(out, str) or "${" in out:
                        continue
                    o = Path(os.path.normpath(wdir / out))
                    if (target == o or o in target.parents) and len(o.parts) > best[0]:
                        best = (len(o.parts), f"{dvc_file.relative_to(root)}:{name}")
    return best[1]


def _made_by(path: Path, stage: Optional[str], hint: Optional[str]) -> str:
    """'made by stage X: run dvc repro <dvc.yaml>:X', from the pipelines' outs, else from `stage`; or the hint."""
    if hint:
        return hint
    target = producing_stage(path) or stage
    if not target:
        return "no DVC stage lists it in its outs"
    if ":" not in target:
        target = f"dvc.yaml:{target}"
    return f"made by stage {target.rsplit(':', 1)[1]}: run dvc repro {target}"


def require(path: Union[str, Path], stage: Optional[str] = None, *, marker: Optional[str] = None,
            hint: Optional[str] = None, error: Type[MissingInputError] = MissingInputError) -> Path:
    """`path` (and `path/marker`, a file every complete output has) must exist, else `error`:
        models/knowledge_lm is missing (made by stage pretrain_lm: run dvc repro dvc.yaml:pretrain_lm)
    The stage is looked up in the DVC pipelines' outs; `stage` ("name" of the root dvc.yaml, or
    "papers/x/dvc.yaml:name") is the fallback for paths outside them. `hint` replaces the stage part
    for inputs that no stage makes (e.g. a path set in params.yaml). Returns `path` as a Path."""
    path = Path(path)
    missing = path if not path.exists() else (path / marker if marker and not (path / marker).exists() else None)
    if missing is not None:
        raise error(f"{_display(missing)} is missing ({_made_by(path, stage, hint)})")
    return path


def _read_errors() -> Tuple[type, ...]:
    """Exceptions that mean 'this input cannot be read': I/O, parse and format errors of the usual readers."""
    import pickle
    import zipfile

    errs: List[type] = [OSError, ValueError, EOFError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError,
                        zipfile.BadZipFile]
    for mod, name in (("safetensors", "SafetensorError"), ("pyarrow", "ArrowException")):
        cls = getattr(sys.modules.get(mod), name, None)
        if isinstance(cls, type):
            errs.append(cls)
    return tuple(errs)


@contextmanager
def reading(path: Union[str, Path], stage: Optional[str] = None, *, hint: Optional[str] = None,
            passthrough: Tuple[type, ...] = ()):
    """Around the code that reads an input made by another stage: a file that has gone missing becomes
    `MissingInputError`, a truncated / corrupt one `UnreadableInputError`, each naming the file (the one that
    failed, when the error says which) and the stage that makes it:
        data/prepared/train/data-00000-of-00001.arrow is unreadable (ArrowInvalid: ...; made by stage ...)
    Exceptions in `passthrough` propagate unchanged (a caller that handles them itself)."""
    try:
        yield
    except UserError:
        raise
    except passthrough:
        raise
    except _read_errors() as e:
        bad = Path(getattr(e, "filename", None) or path)
        made_by = _made_by(Path(path), stage, hint)
        if isinstance(e, FileNotFoundError):
            raise MissingInputError(f"{_display(bad)} is missing ({made_by})") from e
        detail = " ".join(str(e).split())[:300] or "no detail"
        raise UnreadableInputError(f"{_display(bad)} is unreadable ({type(e).__name__}: {detail}; {made_by})") from e


def load_from_disk(path: Union[str, Path], stage: Optional[str] = None, marker: str = "dataset_dict.json",
                   error: Type[MissingInputError] = MissingInputError):
    """`datasets.load_from_disk` of another stage's output: missing -> `error`, unreadable -> UnreadableInputError,
    both naming the path (the broken .arrow file, when one is) and the stage that makes it."""
    import datasets

    path = require(path, stage, marker=marker, error=error)
    try:
        with reading(path, stage):
            return datasets.load_from_disk(str(path))
    except UnreadableInputError:
        import pyarrow as pa

        for f in sorted(path.rglob("*.arrow")):  # which file? (datasets writes the Arrow streaming format)
            with reading(f, stage):
                pa.ipc.open_stream(pa.memory_map(str(f))).read_all()
        raise


def read_json(path: Union[str, Path], stage: Optional[str] = None, keys: Sequence[str] = ()) -> dict:
    """Another stage's JSON output, which must hold `keys`: missing or unreadable (not JSON, a needed key
    absent) -> a UserError naming the file and the stage that makes it."""
    import json

    path = require(path, stage)
    with reading(path, stage):
        out = json.loads(Path(path).read_text())
        missing = [k for k in keys if k not in out]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    return out


def to_dict(cfg) -> dict:
    """A plain nested dict of a config dataclass, for logging and reports."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def resolve(cfg: RootConfig, *parts: str) -> Path:
    """An absolute path under the repository root, e.g. resolve(cfg, cfg.paths.models, 'base')."""
    return repo_root().joinpath(*parts)


if __name__ == "__main__":  # `python -m common.config --check [papers/<name> ...]`: see common/cli.py
    from common.cli import check_main

    sys.exit(check_main(sys.argv[1:]))
