"""Realism and diversity of a sample set in a feature space: PRDC and within-class spread.

Precision, recall, density and coverage follow Naeem et al. 2020, "Reliable Fidelity and
Diversity Metrics for Generative Models" (ICML), whose reference implementation is the `prdc`
package (clovaai/generative-evaluation-prdc). Real features X (N rows), fake features Y (M rows);
r_k(z) is the distance from z to its k-th nearest neighbour in its own set, self excluded:

    precision = 1/M  sum_j 1[ exists i: ||Y_j - X_i|| < r_k(X_i) ]                  (Naeem eq. 1)
    recall    = 1/N  sum_i 1[ exists j: ||X_i - Y_j|| < r_k(Y_j) ]                  (Naeem eq. 2)
    density   = 1/(kM) sum_j sum_i 1[ ||Y_j - X_i|| < r_k(X_i) ]                     (Naeem eq. 3)
    coverage  = 1/N  sum_i 1[ min_j ||X_i - Y_j|| < r_k(X_i) ]                        (Naeem eq. 4)

The inequalities are strict, as in `prdc` (and Meta's EvalGIM PRDC). Default k = 5, the value
Naeem et al. recommend and `prdc`'s examples use (EvalGIM uses k = 3; torch-fidelity's
precision/recall in common/evaluation.py uses k = 3, so the keys written here carry `_k{k}`).

Conditional diversity: the mean Euclidean distance between two distinct samples of the same
class, per class and averaged over classes (`pairwise_distance`), and PRDC computed per class
against that class's reference rows, then averaged (`conditional_prdc`).

Features are [N, D] tensors from the metric backbone (common.evaluation.extract_features);
`score_diversity` computes them for uint8 images with a `SampleScorer`'s backbone and reference set.
Distances are exact (float64, no matmul shortcut) and computed in row blocks, so memory is
O(block * N) and the result does not depend on the block size.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Optional

import torch

BLOCK = 512  # rows of a distance matrix held at once (512 x 50k float64 = 200 MB)


def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distances [len(a), len(b)] in float64 (torch.cdist without the matmul trick)."""
    return torch.cdist(a.double(), b.double(), compute_mode="donot_use_mm_for_euclid_dist")


def _check(name: str, x: torch.Tensor, k: int) -> torch.Tensor:
    if x.ndim != 2:
        raise ValueError(f"{name} features must be [N, D], got shape {tuple(x.shape)}")
    if len(x) <= k:
        raise ValueError(f"{name} has {len(x)} rows; k-NN radii with k={k} need more than k rows")
    return x.double()


def knn_radii(x: torch.Tensor, k: int = 5) -> torch.Tensor:
    """r_k(x_i): distance from each row to its k-th nearest other row, [N].

    The row itself is at distance 0 and is the first of the k+1 smallest distances, so this is
    the (k+1)-th smallest distance of the full row, as in `prdc.compute_nearest_neighbour_distances`.
    """
    x = _check("x", x, k)
    return torch.cat([_cdist(x[s:s + BLOCK], x).kthvalue(k + 1, dim=1).values for s in range(0, len(x), BLOCK)])


def prdc(real: torch.Tensor, fake: torch.Tensor, k: int = 5, *,
         real_radii: Optional[torch.Tensor] = None) -> Dict[str, float]:
    """Precision, recall, density, coverage of `fake` [M, D] against `real` [N, D] (Naeem eqs. 1-4).

    `real_radii` = knn_radii(real, k) may be passed when one reference set scores many sample sets.
    """
    real, fake = _check("real", real, k), _check("fake", fake, k)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    r_real = knn_radii(real, k) if real_radii is None else real_radii.double()  # [N]
    if len(r_real) != len(real):
        raise ValueError(f"real_radii has {len(r_real)} entries for {len(real)} real rows")
    r_fake = knn_radii(fake, k)  # [M]
    inside_real = torch.zeros(len(fake), dtype=torch.long)  # per fake: #{i : d(Y_j, X_i) < r_k(X_i)}
    recalled = torch.zeros(len(real), dtype=torch.bool)  # per real: exists j with d(X_i, Y_j) < r_k(Y_j)
    nearest_fake = torch.empty(len(real), dtype=torch.float64)  # per real: min_j d(X_i, Y_j)
    for s in range(0, len(real), BLOCK):
        d = _cdist(real[s:s + BLOCK], fake)  # [b, M]
        inside_real += (d < r_real[s:s + BLOCK, None]).sum(0)
        recalled[s:s + BLOCK] = (d < r_fake[None, :]).any(1)
        nearest_fake[s:s + BLOCK] = d.min(1).values
    return {
        "precision": float((inside_real > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(inside_real.double().sum() / (k * len(fake))),
        "coverage": float((nearest_fake < r_real).double().mean()),
    }


def conditional_prdc(real: torch.Tensor, real_labels: torch.Tensor, fake: torch.Tensor, fake_labels: torch.Tensor,
                     k: int = 5) -> Dict[str, object]:
    """PRDC of each class's samples against that class's reference rows; `mean` averages over classes.

    Returns {"per_class": {c: {precision, recall, density, coverage}}, "mean": {...}}. Every class
    present in `fake_labels` must have more than k rows in both sets.
    """
    per_class = {}
    for c in sorted(int(c) for c in fake_labels.unique()):
        r, f = real[real_labels == c], fake[fake_labels == c]
        if len(r) <= k or len(f) <= k:
            raise ValueError(f"class {c}: {len(r)} reference and {len(f)} sample rows; conditional PRDC with "
                             f"k={k} needs more than k of each (raise num_samples or lower k)")
        per_class[c] = prdc(r, f, k)
    mean = {m: sum(v[m] for v in per_class.values()) / len(per_class) for m in ("precision", "recall", "density",
                                                                                 "coverage")}
    return {"per_class": per_class, "mean": mean}


def pairwise_distance(feats: torch.Tensor, labels: torch.Tensor) -> Dict[str, object]:
    """Within-class diversity: mean ||f_i - f_j|| over pairs i < j with labels_i = labels_j = c.

    Returns {"per_class": {c: mean distance}, "mean": average over classes}. Classes with fewer than
    two rows have no pair and are left out of both.
    """
    if feats.ndim != 2 or len(feats) != len(labels):
        raise ValueError(f"pairwise_distance needs feats [N, D] and labels [N]; got {tuple(feats.shape)} "
                         f"and {tuple(labels.shape)}")
    per_class = {}
    for c in sorted(int(c) for c in labels.unique()):
        f = feats[labels == c].double()
        n = len(f)
        if n < 2:
            continue
        total = sum(float(_cdist(f[s:s + BLOCK], f).sum()) for s in range(0, n, BLOCK))  # each pair twice
        per_class[c] = total / (n * (n - 1))
    if not per_class:
        raise ValueError("pairwise_distance: no class has two or more rows")
    return {"per_class": per_class, "mean": sum(per_class.values()) / len(per_class)}


@lru_cache(maxsize=4)
def _reference_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """knn_radii of a reference set, computed once per (tensor object, k): tensors hash by identity."""
    return knn_radii(features, k)


def diversity_metrics(f_gen: torch.Tensor, gen_labels: Optional[torch.Tensor], ref: Dict[str, torch.Tensor],
                      k: int = 5) -> Dict[str, float]:
    """Flat metrics of sample features against reference features {'features', 'labels'}.

    Marginal: precision/recall/density/coverage vs the whole reference set. With labels, also the
    conditional versions (`cond_*`: per class vs that class's reference rows, averaged) and the
    mean within-class pairwise distance of the samples (`pairwise_dist`). Names carry `_k{k}`.
    """
    out = {f"{m}_k{k}": v for m, v in prdc(ref["features"], f_gen, k,
                                            real_radii=_reference_radii(ref["features"], k)).items()}
    if gen_labels is not None:
        cond = conditional_prdc(ref["features"], ref["labels"], f_gen, gen_labels, k)["mean"]
        out.update({f"cond_{m}_k{k}": v for m, v in cond.items()})
        out["pairwise_dist"] = pairwise_distance(f_gen, gen_labels)["mean"]
    return out


def sample_features(scorer, images_uint8: torch.Tensor) -> Dict[str, torch.Tensor]:
    """{'features' [N, D], 'logits' [N, K]} of uint8 images in a `SampleScorer`'s metric backbone."""
    from .evaluation import extract_features

    return extract_features(images_uint8, scorer.backbone, scorer.weights_dir)


def score_diversity(scorer, images_uint8: torch.Tensor, labels: Optional[torch.Tensor] = None,
                    k: int = 5) -> Dict[str, float]:
    """`diversity_metrics` of uint8 images against `scorer`'s reference set, keys naming the backbone
    (e.g. `coverage_k5[mnist-classifier]`); with labels also `class_acc` (consistency)."""
    from .evaluation import classifier_accuracy

    f = sample_features(scorer, images_uint8)
    m = diversity_metrics(f["features"], labels, scorer.ref, k)
    if labels is not None:
        m["class_acc"] = classifier_accuracy(f["logits"], labels)
    return {scorer.key(name): v for name, v in m.items()}
