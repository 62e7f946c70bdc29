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
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Type, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

PROFILES = ("cpu", "tiny", "full")


class ConfigError(ValueError):
    """A parameter problem, with the key and the file it came from."""


# --------------------------------------------------------------------------- schema
@dataclass
class PathsConfig:
    data: str = "data"  # prepared datasets (root dvc.yaml outputs)
    models: str = "models"  # shared trained networks (metric backbone, base model)
    runs: str = "runs"  # per-paper working outputs (samples, metrics JSON, checkpoints)
    reports: str = "reports"  # generated, committed reports


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: Optional[str] = None  # default: sqlite:///<repo root>/mlflow.db


@dataclass
class DataConfig:
    name: str = "mnist"  # registry key, see common/data.py
    resolution: int = 16
    num_heldout: int = 1000  # held-out split: FID reference and classifier test set
    source: Optional[str] = None  # full-profile datasets: local path or hub id for `datasets`


@dataclass
class ClassifierConfig:
    """The metric backbone: a small CNN classifier whose penultimate layer replaces Inception."""

    channels: List[int] = field(default_factory=lambda: [32, 64])
    feature_dim: int = 64
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


@dataclass
class UNetConfig:
    """diffusers UNet2DModel, one entry per resolution level in the lists."""

    block_out_channels: List[int] = field(default_factory=lambda: [32, 64, 64])
    attention_levels: List[bool] = field(default_factory=lambda: [False, False, True])
    layers_per_block: int = 1
    num_classes: int = 10  # 0: unconditional; otherwise a null class is added for guidance
    dropout: float = 0.0
    norm_num_groups: int = 8
    attention_head_dim: int = 8
    resnet_time_scale_shift: str = "default"  # "scale_shift" = ADM's use_scale_shift_norm
    resblock_updown: bool = False  # ADM's resblock_updown (BigGAN-style resampling)
    learn_sigma: bool = False  # ADM: 2x output channels (eps and variance interpolation)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"  # linear | squaredcos_cap_v2 (cosine, ADM)
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass
class TrainConfig:
    steps: int = 1800  # optimizer steps
    batch_size: int = 128  # global batch per optimizer step (split over processes)
    grad_accum: int = 1
    lr: float = 2e-3
    warmup_steps: int = 100
    lr_schedule: str = "constant_with_warmup"  # any diffusers.optimization scheduler name
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    cond_dropout: float = 0.1  # classifier-free guidance training
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    mixed_precision: str = "no"
    seed: int = 0
    log_every: int = 20


@dataclass
class BaseEvalConfig:
    num_samples: int = 1000
    nfe: int = 50
    guidance_scale: float = 1.0
    weak_fraction: float = 0.1  # the "weak model" is the same run at this fraction of the steps
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class BaseModelConfig:
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: BaseEvalConfig = field(default_factory=BaseEvalConfig)


@dataclass
class KnowledgeConfig:
    """Knowledge base of real facts and the pretraining corpus stating a subset (common/knowledge.py)."""

    relations: List[str] = field(default_factory=lambda: ["capital", "continent", "currency", "language",
                                                          "calling_code", "demonym"])
    max_entities: int = 0  # > 0: keep the first n facts per relation (tiny runs)
    split: List[float] = field(default_factory=lambda: [0.5, 0.15, 0.35])  # train / dev / test per relation
    frequencies: List[int] = field(default_factory=lambda: [0, 2, 6, 20, 60, 200, 600])  # mentions in the corpus
    frequency_weights: List[float] = field(default_factory=lambda: [2, 1, 1, 1, 1, 1, 1])  # share of facts per bucket
    qa_share: float = 0.34  # share of mentions written as "Q: ... A: ..." lines (the probe format)
    lexicon_mentions: int = 4  # neutral typed-list mentions of every name (no fact stated)
    lines_per_doc: int = 8
    seed: int = 0


@dataclass
class LMModelConfig:
    """A `transformers` GPT-2 trained from scratch (common/lm.py)."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128
    dropout: float = 0.0


@dataclass
class LMTrainConfig:
    seq_len: int = 128  # packed training windows (few-shot probes must fit in them)
    epochs: float = 3.0  # passes over the corpus: a fact of frequency k is seen k x epochs times
    batch_size: int = 32
    lr: float = 1e-2
    warmup_steps: int = 50
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    keep_checkpoints: int = 1
    seed: int = 0
    log_every: int = 20


@dataclass
class KnowledgeLMConfig:
    model: LMModelConfig = field(default_factory=LMModelConfig)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)


@dataclass
class ScenesConfig:
    """Captioned scenes of real MNIST digits with graded caption noise (common/scenes.py)."""

    source: str = "mnist"  # a common.data source of digit images with labels (tiny: sklearn digits)
    heldout_digits: int = 1000  # MNIST digits reserved for the test scenes
    n_hq: int = 5000  # clean, uniform digit classes
    n_pool: int = 30000  # mixed quality, long-tailed digit classes
    n_probe_train: int = 2000  # clean single-digit scenes for linear probes
    n_test: int = 2000  # clean scenes from held-out digits
    pool_noise: Dict[str, float] = field(default_factory=lambda: {"wrong_colour": 0.15, "wrong_digit": 0.15, "unrelated": 0.3})
    tail_ratio: float = 30.0  # pool: digit 0 is tail_ratio x as frequent as digit 9
    count_probs: List[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # 1, 2, 3 digits (hq, pool)
    test_count_probs: List[float] = field(default_factory=lambda: [2.0, 1.0, 1.0])  # half single-digit scenes
    seed: int = 0


@dataclass
class ClipModelConfig:
    """A small CLIP dual encoder from open_clip's blocks (common/clip.py)."""

    embed_dim: int = 64
    image_tower: str = "cnn"  # cnn (common.clip.SmallCNN) | resnet (open_clip ModifiedResNet) | vit (open_clip ViT)
    cnn_widths: List[int] = field(default_factory=lambda: [32, 64, 128])
    resnet_layers: List[int] = field(default_factory=lambda: [1, 1, 1, 1])
    resnet_width: int = 16
    vit_width: int = 96
    vit_layers: int = 4
    vit_patch: int = 8
    vit_head_width: int = 32
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 32


@dataclass
class ClipTrainConfig:
    samples: int = 80000  # samples seen (steps = samples / batch_size)
    batch_size: int = 256
    lr: float = 2e-3
    warmup_steps: int = 20
    lr_schedule: str = "cosine"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    keep_checkpoints: int = 1
    seed: int = 0
    log_every: int = 10


@dataclass
class SceneClipConfig:
    """The shared small CLIP trained on the clean `hq` split: teacher scores and embeddings."""

    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)


@dataclass
class RootConfig:
    profile: str = "cpu"
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    base_model: BaseModelConfig = field(default_factory=BaseModelConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)
    knowledge_lm: KnowledgeLMConfig = field(default_factory=KnowledgeLMConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    scene_clip: SceneClipConfig = field(default_factory=SceneClipConfig)


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


def _apply_overrides(cfg, overrides: Sequence[str]):
    """Apply command-line overrides written in Hydra's override grammar (`a.b=1`, `a.c=[1,2]`)."""
    if not overrides:
        return cfg
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as e:  # hydra raises its own OverrideParseException
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {e}") from None
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
        cfg = _merge(cfg, nested, f"command line override '{ov.input_line}'")
    return cfg


def _profile_of(cfg, overrides: Sequence[str]) -> str:
    for o in overrides:
        if o.startswith("profile="):
            return o.split("=", 1)[1]
    return cfg.profile


def load_config(
    schema: Type[C] = RootConfig, paper: Optional[str] = None, overrides: Sequence[str] = (), root: Optional[Path] = None
) -> C:
    """Load, validate and return the typed configuration for the root stages or one paper."""
    root = Path(root) if root else repo_root()
    files = [root / "params.yaml"]
    if paper:
        files.append(root / "papers" / paper / "params.yaml")

    cfg = OmegaConf.structured(schema)
    OmegaConf.set_struct(cfg, True)
    raw = {}
    for f in files:
        raw[f] = _read_yaml(f)
        body = {k: v for k, v in raw[f].items() if k != "profiles"}
        cfg = _merge(cfg, body, str(f.relative_to(root)))

    profile = _profile_of(cfg, overrides)
    known = set(PROFILES) | {p for d in raw.values() for p in (d.get("profiles") or {})}
    if profile not in known:
        raise ConfigError(
            f"params.yaml: bad parameter 'profile': {profile!r} is not one of {sorted(known)}"
        )
    for f, data in raw.items():
        overlay = (data.get("profiles") or {}).get(profile)
        if overlay:
            cfg = _merge(cfg, overlay, f"{f.relative_to(root)} (profiles.{profile})")
    cfg = _apply_overrides(cfg, overrides)
    cfg.profile = profile
    try:
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{', '.join(str(f.relative_to(root)) for f in files)}: {e}") from None


def to_dict(cfg) -> dict:
    """A plain nested dict of a config dataclass, for logging and reports."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def resolve(cfg: RootConfig, *parts: str) -> Path:
    """An absolute path under the repository root, e.g. resolve(cfg, cfg.paths.models, 'base')."""
    return repo_root().joinpath(*parts)
