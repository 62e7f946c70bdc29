"""Schema of papers/catlip/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import ClipModelConfig, ClipTrainConfig, RootConfig, bounded, required, seed_list


@dataclass
class LabelConfig:
    """Caption -> label set (Eq. 1) and the vocabulary V (method.py)."""

    mode: str = "lemma"  # lemma (rule-based lemmas, no lexicon data) | wordnet (the paper: nltk WordNet synsets)
    nouns_only: bool = False  # False = the official code (POS tags computed but unused: "black" is a label)
    v_tau: int = bounded(100, ge=1)  # keep labels occurring in >= v_tau training captions (paper: 500 on DataComp-1.3B)


@dataclass
class StudyConfig:
    """CatLIP vs CLIP with the same image tower, training pairs and samples seen."""

    dataset: Optional[str] = None  # None: the shared captioned scenes (data/scenes); else an external set
    train_split: str = "pool"  # scenes split both arms train on
    seeds: List[int] = seed_list(0, 1, 2)
    timing_steps: int = required(ge=1)  # interleaved timed optimizer steps per arm and seed (after 2 warm-up steps)
    # "keeps improving with more epochs on small data" (optional; epochs_subset = 0 disables it)
    epochs_subset: int = required(ge=0)  # first n pairs of train_split
    epochs: List[int] = bounded(factory=lambda: [5, 10, 20, 40], ge=1)  # evaluated along one run of max(epochs)
    epochs_seeds: List[int] = seed_list(0, 1, 2)


@dataclass
class CatlipConfig(RootConfig):
    labels: LabelConfig = field(default_factory=LabelConfig)
    model: ClipModelConfig = field(default_factory=ClipModelConfig)
    train: ClipTrainConfig = field(default_factory=ClipTrainConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
