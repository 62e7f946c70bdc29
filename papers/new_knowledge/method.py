"""SliCK and the Unknown-share study -- Gekhman, Yona, Aharoni, Eyal, Feder, Reichart, Herzig,
"Does Fine-Tuning LLMs on New Knowledge Encourage Hallucinations?", EMNLP 2024 (arXiv:2405.05904).

1. P_correct (Sec. 3, App. C). The chance that model M answers question q with the gold answer a,
   given random few-shot exemplars of the same relation and decoding temperature T:
       P_correct(q, a; M, T)
   estimated with N_ex = 10 random 4-shot prompts (exemplars "Q: ... A: ..." from the dev split),
   1 greedy answer per prompt (T = 0) and 16 samples per prompt (T = 0.5, top-40), exact match:
       P(T=0) = #correct greedy answers / 10,     P(T>0) = #correct samples / 160.

2. SliCK categories (Fig. 2):
       HighlyKnown   P(T=0) = 1
       MaybeKnown    0 < P(T=0) < 1
       WeaklyKnown   P(T=0) = 0  and  P(T>0) > 0
       Unknown       P(T=0) = 0  and  P(T>0) = 0
   Known = HighlyKnown + MaybeKnown + WeaklyKnown.

3. The study (Sec. 3-4). Fine-tuning sets D of fixed size with X% Unknown examples, sampled per
   relation; train to CONVERGENCE (all of D fitted) and report test accuracy there and at EARLY_STOP
   (the epoch with the best dev accuracy). Linear model of test accuracy (Sec. 4.3, Eq. 1):
       Accuracy = beta_0 + beta_kn * N_kn / |D| + beta_unk * N_unk / |D|
   with N_kn, N_unk the Known and Unknown training examples the model *fits* (answers correctly) at
   that epoch; one row per epoch per variant. The paper: beta_kn > 0, beta_unk < 0.

Estimating P(T>0). Counting exact-match hits among n sampled answers is a draw from
Binomial(n, p_sample), p_sample the probability that one sample is exactly the answer. For a
word-level tokenizer p_sample comes in closed form from one teacher-forced pass (common/lm.py), so
the `teacher_forced` estimator draws the counts from that binomial: the same law as decoding the
samples, at a fraction of the cost. The `decode` estimator decodes literally (any tokenizer).
"""

from __future__ import annotations

import re
import string
from typing import Dict, List, Sequence, Tuple

import numpy as np

from common.knowledge import qa_line

HIGHLY_KNOWN, MAYBE_KNOWN, WEAKLY_KNOWN, UNKNOWN = "HighlyKnown", "MaybeKnown", "WeaklyKnown", "Unknown"
CATEGORIES = (HIGHLY_KNOWN, MAYBE_KNOWN, WEAKLY_KNOWN, UNKNOWN)
KNOWN = "Known"  # HighlyKnown + MaybeKnown + WeaklyKnown


# --------------------------------------------------------------------------- exact match
def normalize_answer(s: str) -> str:
    """Lower-case, punctuation -> space, drop articles (a, an, the), collapse whitespace.

    SQuAD-style, except that punctuation becomes a space instead of vanishing, so an answer decoded
    token by token ("St . John ' s") and its reference ("St. John's") normalise alike.
    """
    s = s.lower()
    s = "".join(" " if ch in string.punctuation else ch for ch in s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


# --------------------------------------------------------------------------- P_correct prompts
def few_shot_prompt(exemplars: Sequence[Tuple[str, str]], question: str) -> str:
    """k exemplars of the same relation as 'Q: ... A: ...' lines, then the question (App. C)."""
    return "".join(qa_line(q, a) for q, a in exemplars) + qa_line(question)


def exemplar_sets(pool: Sequence[Tuple[str, str]], n_prompts: int, k: int, rng: np.random.Generator
                  ) -> List[List[Tuple[str, str]]]:
    """N_ex random k-shot exemplar sets drawn from the dev pool of the question's relation."""
    k = min(k, len(pool))
    return [[pool[i] for i in rng.choice(len(pool), size=k, replace=False)] for _ in range(n_prompts)]


def sample_hits(p_sample: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Correct answers among `n_samples` samples per prompt: Binomial(n_samples, p_sample)."""
    return rng.binomial(n_samples, np.clip(np.asarray(p_sample, dtype=float), 0.0, 1.0))


# --------------------------------------------------------------------------- SliCK (Fig. 2)
def p_correct(greedy_correct: Sequence[bool], sample_correct: Sequence[int], n_samples: int) -> Tuple[float, float]:
    """(P(T=0), P(T>0)) of one question from its per-prompt greedy hits and per-prompt sample hit counts."""
    g = np.asarray(greedy_correct, dtype=float)
    s = np.asarray(sample_correct, dtype=float)
    return float(g.mean()), float(s.sum() / (n_samples * len(s)))


def slick_category(p_greedy: float, p_sample: float) -> str:
    if p_greedy == 1.0:
        return HIGHLY_KNOWN
    if p_greedy > 0.0:
        return MAYBE_KNOWN
    if p_sample > 0.0:
        return WEAKLY_KNOWN
    return UNKNOWN


def is_known(category: str) -> bool:
    return category != UNKNOWN


# --------------------------------------------------------------------------- the study's fine-tuning sets
def unknown_share_variants(categories: Dict[str, str], relations: Dict[str, str], shares: Sequence[float],
                           seed: int, cap_per_relation: int = 0) -> Tuple[Dict[float, List[str]], Dict[str, int]]:
    """{share: [example ids]}: fine-tuning sets of one fixed size with `share` of Unknown examples.

    Per relation r, n_r = min(#Known_r, #Unknown_r) (optionally capped) examples, round(share * n_r) of
    them Unknown and the rest Known; |D| = sum_r n_r for every share ("X% Unknown, sampled per relation").
    The sets are nested prefixes of one seeded permutation per relation and category, so variants of the
    same seed differ only in the examples swapped between Known and Unknown.
    Returns the variants and n_r per relation.
    """
    by_rel: Dict[str, Dict[bool, List[str]]] = {}
    for ex_id in sorted(categories):
        by_rel.setdefault(relations[ex_id], {True: [], False: []})[is_known(categories[ex_id])].append(ex_id)
    out: Dict[float, List[str]] = {s: [] for s in shares}
    sizes = {}
    for r_i, rel in enumerate(sorted(by_rel)):
        rng = np.random.default_rng([seed, r_i])
        kn = [by_rel[rel][True][i] for i in rng.permutation(len(by_rel[rel][True]))]
        unk = [by_rel[rel][False][i] for i in rng.permutation(len(by_rel[rel][False]))]
        n = min(len(kn), len(unk))
        if cap_per_relation:
            n = min(n, cap_per_relation)
        sizes[rel] = n
        for s in shares:
            n_unk = int(np.floor(s * n + 0.5))  # round half up (Python's round() goes to even)
            out[s] += unk[:n_unk] + kn[: n - n_unk]
    return out, sizes


def early_stop_epoch(dev_accuracy: Sequence[float], epochs: Sequence[int]) -> int:
    """EARLY_STOP: the epoch with the best dev accuracy (the first one on ties)."""
    return int(epochs[int(np.argmax(dev_accuracy))])


def fit_linear_model(frac_known_fitted: Sequence[float], frac_unknown_fitted: Sequence[float],
                     accuracy: Sequence[float]) -> Dict[str, float]:
    """Ordinary least squares for Eq. 1: Accuracy = beta_0 + beta_kn N_kn/|D| + beta_unk N_unk/|D|.

    Returns beta_0, beta_kn, beta_unk and R^2.
    """
    y = np.asarray(accuracy, dtype=float)
    X = np.column_stack([np.ones_like(y), np.asarray(frac_known_fitted, float), np.asarray(frac_unknown_fitted, float)])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {"beta_0": float(beta[0]), "beta_kn": float(beta[1]), "beta_unk": float(beta[2]), "r2": r2}
