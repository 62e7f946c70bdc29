"""Schema of papers/new_knowledge/params.yaml (extends the root schema; unknown keys fail)."""

from dataclasses import dataclass, field
from typing import List, Optional

from common.config import REQUIRED, RootConfig, required


@dataclass
class SlickConfig:
    """P_correct estimation (paper App. C): N_ex random k-shot prompts x (1 greedy + n samples)."""

    n_prompts: int = required(ge=1)  # N_ex
    k_shot: int = required(ge=0)
    n_samples: int = required(ge=1)  # per prompt, at `temperature` with top-k truncation
    temperature: float = required(gt=0)
    top_k: int = required(ge=0)
    estimator: str = REQUIRED  # teacher_forced (word-level tokenizer, binomial hits) | decode (literal)
    max_new_tokens: int = required(ge=1)  # decode estimator only
    splits: List[str] = REQUIRED  # dev holds the exemplars
    batch_size: int = required(ge=1)
    seed: int = required(ge=0)


@dataclass
class StudyConfig:
    """Fine-tuning sets of fixed size with a controlled share of Unknown examples (Sec. 3-4)."""

    unknown_shares: List[float] = required(ge=0, le=1, nonempty=True)
    seeds: List[int] = required(ge=0, nonempty=True)  # sampling of D and data order
    epochs: int = required(ge=1)  # CONVERGENCE: the last epoch
    batch_size: int = required(ge=1)
    lr: float = required(gt=0)
    lr_schedule: str = REQUIRED
    weight_decay: float = required(ge=0)
    grad_clip: float = required(ge=0)
    dropout: float = required(ge=0, le=1)  # the paper's fine-tuning dropout
    cap_per_relation: int = required(ge=0)  # > 0: at most this many examples per relation in D
    fit_speed_share: float = required(ge=0, le=1)  # the variant whose Known / Unknown training curves are compared
    eval_batch_size: int = required(ge=1)


@dataclass
class NewKnowledgeConfig(RootConfig):
    base_lm: Optional[str] = REQUIRED  # None: models/knowledge_lm (root stage pretrain_lm); else a causal LM path/hub id
    questions: Optional[str] = REQUIRED  # None: data/knowledge/facts (root stage build_knowledge); else EntityQuestions
    slick: SlickConfig = field(default_factory=SlickConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
