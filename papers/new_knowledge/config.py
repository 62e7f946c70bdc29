"""Schema of papers/new_knowledge/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig, bounded, seed_list, unit


@dataclass
class SlickConfig:
    """P_correct estimation (paper App. C): N_ex random k-shot prompts x (1 greedy + n samples)."""

    n_prompts: int = bounded(10, ge=1)  # N_ex
    k_shot: int = bounded(4, ge=0)
    n_samples: int = bounded(16, ge=1)  # per prompt, at `temperature` with top-k truncation
    temperature: float = bounded(0.5, gt=0)
    top_k: int = bounded(40, ge=0)
    estimator: str = "teacher_forced"  # teacher_forced (word-level tokenizer, binomial hits) | decode (literal)
    max_new_tokens: int = bounded(8, ge=1)  # decode estimator only
    splits: List[str] = field(default_factory=lambda: ["train", "test"])  # dev holds the exemplars
    batch_size: int = bounded(256, ge=1)
    seed: int = bounded(0, ge=0)


@dataclass
class StudyConfig:
    """Fine-tuning sets of fixed size with a controlled share of Unknown examples (Sec. 3-4)."""

    unknown_shares: List[float] = unit(factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], nonempty=True)
    seeds: List[int] = seed_list(0, 1, 2)  # sampling of D and data order
    epochs: int = bounded(30, ge=1)  # CONVERGENCE: the last epoch
    batch_size: int = bounded(16, ge=1)
    lr: float = bounded(4e-4, gt=0)
    lr_schedule: str = "constant"
    weight_decay: float = bounded(0.0, ge=0)
    grad_clip: float = bounded(1.0, ge=0)
    dropout: float = unit(0.05)  # the paper's fine-tuning dropout
    cap_per_relation: int = bounded(0, ge=0)  # > 0: at most this many examples per relation in D
    fit_speed_share: float = unit(0.5)  # the variant whose Known / Unknown training curves are compared
    eval_batch_size: int = bounded(512, ge=1)


@dataclass
class NewKnowledgeConfig(RootConfig):
    base_lm: Optional[str] = None  # None: models/knowledge_lm (root stage pretrain_lm); else a causal LM path/hub id
    questions: Optional[str] = None  # None: data/knowledge/facts (root stage build_knowledge); else EntityQuestions
    slick: SlickConfig = field(default_factory=SlickConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
