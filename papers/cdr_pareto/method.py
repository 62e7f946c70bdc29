"""Consistency-diversity-realism Pareto fronts -- Astolfi, Careil, Hall, Manas, Muckley, Verbeek,
Romero-Soriano, Drozdzal, "Consistency-diversity-realism Pareto fronts of conditional image
generative models", 2024 (arXiv:2406.10429).

The paper's idea is an evaluation protocol, not a sampler: a conditional generative model is judged
on three axes at once, and its inference-time "knobs" (guidance scale, ...) trace a curve through
them; the non-dominated points of all curves form the Pareto front, and "there is no best model".

The three axes (Sec. 3 of the paper; "conditional" = per prompt, "marginal" = over the whole
distribution), adapted to the class-conditional MNIST model of this repository:

  consistency  does the image show its condition?  Paper: DSG / CLIPScore / VQAScore of the prompt.
               Here: the held-out metric classifier (models/classifier, never used to train the
               generator) reads the conditioning class: `class_acc`; also the mean probability it
               gives that class, `target_prob`.
  realism      do samples lie on the real-image manifold?  Paper: marginal precision and density
               (Naeem et al. 2020) in Inception space.  Here: `precision_k5`, `density_k5` in the
               classifier's 64-d feature space against the held-out split.
  diversity    do samples cover the real distribution?  Paper: marginal recall and coverage, plus
               conditional (per-prompt) diversity.  Here: marginal `recall_k5`, `coverage_k5`;
               conditional `cond_recall_k5`, `cond_coverage_k5` (each class's samples against that
               class's real images, averaged over classes) and `pairwise_dist` (mean feature
               distance between two samples of the same class, averaged over classes).

PRDC and pairwise distances live in common/diversity.py (k = 5, Naeem et al.'s default; the
paper's EvalGIM code uses k = 3 on Inception-2048 features).

Knobs swept here: classifier-free guidance scale w, the CADS noise scale s (papers/cads/method.py,
condition-annealed sampling, at fixed w), and the number of sampling steps.

Pareto front (the paper uses the `paretoset` package): a point p is dominated when another point q
is at least as good on every objective and strictly better on one; the front is the set of points
no other point dominates. Equal points do not dominate each other, so duplicates stay on the front
together (paretoset's `distinct=True` would keep one of them).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from common.diversity import diversity_metrics
from common.evaluation import classifier_accuracy

# metric (as written by evaluate.py, without the backbone suffix) -> (axis, higher is better)
AXES: Dict[str, tuple] = {
    "class_acc": ("consistency", True),
    "target_prob": ("consistency", True),
    "precision_k5": ("realism", True),
    "density_k5": ("realism", True),
    "recall_k5": ("diversity", True),
    "coverage_k5": ("diversity", True),
    "cond_recall_k5": ("diversity", True),
    "cond_coverage_k5": ("diversity", True),
    "pairwise_dist": ("diversity", True),
}


def consistency(logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
    """Class consistency: the metric classifier's accuracy on the conditioning labels and its mean
    probability of the conditioning class (the analogue of a per-prompt VQA/CLIP score)."""
    p = logits.double().softmax(1)
    return {"class_acc": classifier_accuracy(logits, labels),
            "target_prob": float(p.gather(1, labels.long()[:, None]).mean())}


def cdr_metrics(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                ref: Dict[str, torch.Tensor], k: int = 5) -> Dict[str, float]:
    """All three axes of one sample set: consistency from logits, realism and diversity from features
    [N, D] against the reference {'features', 'labels'} (marginal and per-class)."""
    return {**consistency(logits, labels), **diversity_metrics(features, labels, ref, k)}


def pareto_front(points, maximize: Optional[Sequence[bool]] = None) -> np.ndarray:
    """Boolean mask [P] of the non-dominated rows of `points` [P, M].

    `maximize[m]` says whether objective m is better when larger (default: all maximised).
    O(P^2 M), fine for the tens of knob settings of a sweep. NaN rows are never on the front.
    """
    x = np.asarray(points, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"pareto_front needs points [P, M], got shape {x.shape}")
    sign = np.ones(x.shape[1]) if maximize is None else np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    if len(sign) != x.shape[1]:
        raise ValueError(f"maximize has {len(sign)} entries for {x.shape[1]} objectives")
    x = x * sign
    ok = ~np.isnan(x).any(1)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = x[ok]
        # q dominates x_i: >= everywhere and > somewhere
        if np.any(np.all(others >= x[i], 1) & np.any(others > x[i], 1)):
            front[i] = False
    return front
