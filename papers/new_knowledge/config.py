"""Schema of papers/new_knowledge/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import RootConfig


@dataclass
class SlickConfig:
    """P_correct estimation (paper App. C): N_ex random k-shot prompts x (1 greedy + n samples)."""

    n_prompts: int = 10  # N_ex
    k_shot: int = 4
    n_samples: int = 16  # per prompt, at `temperature` with top-k truncation
    temperature: float = 0.5
    top_k: int = 40
    estimator: str = "teacher_forced"  # teacher_forced (word-level tokenizer, binomial hits) | decode (literal)
    max_new_tokens: int = 8  # decode estimator only
    splits: List[str] = field(default_factory=lambda: ["train", "test"])  # dev holds the exemplars
    batch_size: int = 256
    seed: int = 0


@dataclass
class StudyConfig:
    """Fine-tuning sets of fixed size with a controlled share of Unknown examples (Sec. 3-4)."""

    unknown_shares: List[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])  # sampling of D and data order
    epochs: int = 30  # CONVERGENCE: the last epoch
    batch_size: int = 16
    lr: float = 4e-4
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    dropout: float = 0.05  # the paper's fine-tuning dropout
    cap_per_relation: int = 0  # > 0: at most this many examples per relation in D
    fit_speed_share: float = 0.5  # the variant whose Known / Unknown training curves are compared
    eval_batch_size: int = 512


@dataclass
class NewKnowledgeConfig(RootConfig):
    base_lm: Optional[str] = None  # None: models/knowledge_lm (root stage pretrain_lm); else a causal LM path/hub id
    questions: Optional[str] = None  # None: data/knowledge/facts (root stage build_knowledge); else EntityQuestions
    slick: SlickConfig = field(default_factory=SlickConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
