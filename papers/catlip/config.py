"""Schema of papers/catlip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, ClipModelConfig, ClipTrainConfig, RootConfig, required


@dataclass
class LabelConfig:
    """Caption -> label set (Eq. 1) and the vocabulary V (method.py)."""

    mode: str = REQUIRED  # lemma (rule-based lemmas, no lexicon data) | wordnet (the paper: nltk WordNet synsets)
    nouns_only: bool = REQUIRED  # False = the official code (POS tags computed but unused: "black" is a label)
    v_tau: int = required(ge=1)  # keep labels occurring in >= v_tau training captions (paper: 500 on DataComp-1.3B)


@dataclass
class StudyConfig:
    """CatLIP vs CLIP with the same image tower, training pairs and samples seen."""

    dataset: Optional[str] = REQUIRED  # None: the shared captioned scenes (data/scenes); else an external set
    train_split: str = REQUIRED  # scenes split both arms train on
    seeds: List[int] = required(ge=0, nonempty=True)
    timing_steps: int = required(ge=1)  # interleaved timed optimizer steps per arm and seed (after 2 warm-up steps)
    # "keeps improving with more epochs on small data" (optional; epochs_subset = 0 disables it)
    epochs_subset: int = required(ge=0)  # first n pairs of train_split
    epochs: List[int] = required(ge=1)  # evaluated along one run of max(epochs)
    epochs_seeds: List[int] = required(ge=0, nonempty=True)


@dataclass
class CatlipConfig(RootConfig):
    labels: LabelConfig = field(default_factory=LabelConfig)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
