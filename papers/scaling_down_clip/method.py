"""Scaling (Down) CLIP (Li, Xie, Cubuk, 2024; arXiv:2404.08197): the data and architecture axes.

The paper has no new loss: it trains standard CLIP under fixed budgets and varies one thing at a
time. What it defines, and what this file holds, is how the axes are set up and measured:

1. Compute (Sec. 2, "Training setup"): every comparison is at a fixed number of samples seen, and
   compute is counted as

       C = GFLOPs/sample x samples seen,                                              (compute)

   so runs with different architectures are compared at equal C only when their FLOPs/sample match.

2. Data quality (Sec. 3.2): the quality of a pair is the image-text similarity of a pretrained CLIP,

       q(x, t) = <f(x), g(t)> / (|f(x)| |g(t)|),                                   (quality score)

   and the "Top x%" subset keeps the x% of pairs with the highest q (Top 20/40/60/80% of WebLI).
   At equal samples seen a smaller subset is repeated more: epochs = samples / |subset|.

3. Architecture vs data (Sec. 5): a CNN (ResNet-50) and a ViT (ViT-B/32) of similar GFLOPs/sample
   trained on datasets of increasing size; the CNN's inductive bias is worth most when data is small.

Nothing here trains a network; `experiment.py` wires these pieces to `common.clip_runs.run_clip`.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from common.clip_runs import top_fraction


# --------------------------------------------------------------------------- (quality score)
def quality_score(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of each image with its own caption under a frozen CLIP: [N, d] x [N, d] -> [N]."""
    a = np.asarray(image_emb, dtype=np.float64)
    b = np.asarray(text_emb, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"image and text embeddings must be [N, d] of the same shape, got {a.shape} and {b.shape}")
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def top_x_subset(scores: np.ndarray, pct: float) -> np.ndarray:
    """Indices (sorted) of the "Top x%" pairs by quality score: exactly round(x/100 * N) pairs, highest first.

    Ties at the cut are broken by pool index (lower index kept), so the subset is a pure function of the
    scores (common.clip_runs.top_fraction). Subsets are nested: Top 20% contains Top 10%.
    """
    if not 0 < float(pct) <= 100:
        raise ValueError(f"quality.top_pct: {pct} is not in (0, 100]")
    scores = np.asarray(scores)
    if scores.ndim != 1 or not np.isfinite(scores).all():
        raise ValueError("quality scores must be a finite 1-d array (one per pool pair)")
    idx = top_fraction(scores, float(pct) / 100.0)
    if len(idx) == 0:
        raise ValueError(f"quality.top_pct={pct} of {len(scores)} pairs keeps no pair")
    return idx


def epochs(samples_seen: int, n_train: int) -> float:
    """Passes over the training set at a fixed budget of samples seen (smaller subsets repeat more)."""
    return float(samples_seen) / float(n_train)


# --------------------------------------------------------------------------- (compute)
def training_compute(gflops_per_sample: float, samples_seen: int) -> float:
    """C = GFLOPs/sample x samples seen, in GFLOPs (the paper's compute axis)."""
    if gflops_per_sample <= 0 or samples_seen < 0:
        raise ValueError(f"compute needs GFLOPs/sample > 0 and samples >= 0, got {gflops_per_sample}, {samples_seen}")
    return float(gflops_per_sample) * float(samples_seen)


def flops_matched(flops_a: float, flops_b: float, max_ratio: float) -> bool:
    """Whether two architectures have "similar FLOPs": their ratio lies in [1/max_ratio, max_ratio]."""
    r = float(flops_a) / float(flops_b)
    return 1.0 / max_ratio <= r <= max_ratio


# --------------------------------------------------------------------------- data size axis (Sec. 5)
def nested_subsets(n_total: int, sizes: Sequence[int], seed: int) -> Dict[int, np.ndarray]:
    """Random subsets of a clean set of `n_total` pairs, one per size, nested (smaller within larger).

    The first n of one seeded permutation: growing the dataset only adds pairs, so the data-size
    axis changes quantity and nothing else.
    """
    sizes = [int(s) for s in sizes]
    bad = [s for s in sizes if not 0 < s <= n_total]
    if bad:
        raise ValueError(f"architecture.sizes {bad} not in [1, {n_total}] (the hq split has {n_total} pairs)")
    perm = np.random.default_rng(seed).permutation(n_total)
    return {s: np.sort(perm[:s]) for s in sizes}


def interior_optimum(xs: Sequence[float], errors: Sequence[float]) -> Dict[str, float]:
    """The grid point of lowest error and whether it is interior (the paper: Top 40% beats Top 20% and 100%)."""
    k = int(np.argmin(errors))
    return {"argmin": float(xs[k]), "interior": bool(0 < k < len(xs) - 1)}


def gap(method: List[float], baseline: List[float]) -> List[float]:
    """Per-seed differences method - baseline (e.g. CNN - ViT accuracy at one data size)."""
    return [float(m) - float(b) for m, b in zip(method, baseline)]
