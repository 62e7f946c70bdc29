"""Automatic data curation for SSL (Vo et al., 2024, arXiv:2405.15613): the method, in numpy.

The paper's argument (Sec. 3): plain k-means places its centroids with a density that grows with the
data density (Zador: p^{d/(d+2)}), so the head concepts of a long-tailed pool take most clusters and
sampling per cluster stays unbalanced. Two fixes, then one sampler:

1. Resampling k-means (Sec. 3.2, Alg. 1): after k-means, repeatedly re-fit the centroids on the
   `sample_size` points closest to each centroid (one small, equal-size sample per cluster), then
   reassign every point. Each round pulls centroids away from dense regions.
2. Hierarchical k-means (Sec. 3.2): bottom-up, level t clusters the centroids of level t-1, so the
   top level sees one point per lower cluster rather than one per datum and spreads over the support.
3. Hierarchical balanced sampling (Sec. 3.3, Alg. 2): split the target size T across the top-level
   clusters by water-filling (every cluster gets min(x, |C|), x the largest cut that fits), recurse
   the share of each cluster into its children, and draw the leaf shares at random from the members
   (strategy 'r', the paper's best).

Every random choice takes an explicit `np.random.Generator` (the official code uses the global
`np.random`). Names follow the paper and the official code (facebookresearch/ssl-data-curation,
`src/kmeans_gpu.py`, `src/hierarchical_kmeans_gpu.py`, `src/hierarchical_sampling.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

# --------------------------------------------------------------------------- k-means (Lloyd, k-means++)


def sq_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """||x - c||^2 [n, k] for rows of X [n, d] and C [k, d], float64."""
    x2 = np.einsum("nd,nd->n", X, X)
    c2 = np.einsum("kd,kd->k", C, C)
    return np.maximum(x2[:, None] - 2.0 * (X @ C.T) + c2[None, :], 0.0)


def assign(X: np.ndarray, C: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the closest centroid per point (L2), in chunks to bound memory. The distances are
    computed in float32 (argmin only; the official code keeps the data in float32 too); means and
    potentials stay float64."""
    X32, C32 = X.astype(np.float32, copy=False), C.astype(np.float32)
    c2 = np.einsum("kd,kd->k", C32, C32)
    out = np.empty(len(X), dtype=np.int64)
    for s in range(0, len(X), chunk):
        out[s:s + chunk] = (c2[None, :] - 2.0 * (X32[s:s + chunk] @ C32.T)).argmin(1)  # ||x||^2 is constant per row
    return out


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; the greedy variant of scikit-learn that the
    official code adapts): each new centre is the best of 2 + log(k) candidates drawn with probability
    proportional to D(x)^2, best = lowest potential sum_x min(D(x)^2, ||x - cand||^2)."""
    n = len(X)
    trials = n_local_trials or 2 + int(np.log(k))
    C = np.empty((k, X.shape[1]), dtype=np.float64)
    first = int(rng.integers(n))
    C[0] = X[first]
    closest = sq_distances(X, C[:1])[:, 0]
    pot = closest.sum()
    for c in range(1, k):
        cand = np.searchsorted(np.cumsum(closest), rng.uniform(size=trials) * pot)
        cand = np.minimum(cand, n - 1)
        d = np.minimum(closest[None, :], sq_distances(X, X[cand]).T)  # [trials, n] potential after adding each
        pots = d.sum(1)
        best = int(pots.argmin())
        pot, closest = pots[best], d[best]
        C[c] = X[cand[best]]
    return C


def centroids_of(X: np.ndarray, labels: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Cluster means (float64); an empty cluster keeps its previous centroid (as the official code)."""
    k = len(previous)
    sums = np.zeros_like(previous, dtype=np.float64)
    np.add.at(sums, labels, X)
    counts = np.bincount(labels, minlength=k)
    C = previous.copy()
    nz = counts > 0
    C[nz] = sums[nz] / counts[nz, None]
    return C


def kmeans(X: np.ndarray, k: int, rng: np.random.Generator, n_iters: int = 50):
    """k-means++ init, then `n_iters` Lloyd rounds (means, reassign); returns (centroids [k, d], labels [n])."""
    if k > len(X):
        raise ValueError(f"k-means with k={k} on {len(X)} points (the official code silently lowers k; we refuse)")
    C = kmeans_plusplus(X, k, rng)
    labels = assign(X, C)
    for _ in range(n_iters):
        C = centroids_of(X, labels, C)
        labels = assign(X, C)
    return C, labels


def closest_to_centroids(X: np.ndarray, C: np.ndarray, labels: np.ndarray, sample_size: int) -> np.ndarray:
    """Indices of the `sample_size` members of every cluster closest to its centroid (all members if fewer)."""
    d = np.einsum("nd,nd->n", X - C[labels], X - C[labels])
    order = np.lexsort((d, labels))  # by cluster, then by distance to the centroid
    lab = labels[order]
    rank = np.arange(len(order)) - np.searchsorted(lab, lab, side="left")
    return np.sort(order[rank < sample_size])


def resampling_kmeans(X: np.ndarray, k: int, rng: np.random.Generator, sample_size: int, n_resamples: int,
                      n_iters: int = 50, strategy: str = "closest"):
    """One level of Alg. 1: k-means, then `n_resamples` rounds of (take `sample_size` points per cluster,
    closest to its centroid or at random; k-means on that union; reassign all points). Rounds are skipped
    when sample_size <= 1, as in the official code."""
    X = np.asarray(X, dtype=np.float64)
    C, labels = kmeans(X, k, rng, n_iters)
    if sample_size > 1:
        for _ in range(n_resamples):
            if strategy == "closest":
                S = closest_to_centroids(X, C, labels, sample_size)
            elif strategy == "random":
                S = np.concatenate([rng.choice(np.flatnonzero(labels == j), min(sample_size, int((labels == j).sum())),
                                               replace=False) for j in range(k) if (labels == j).any()])
            else:
                raise ValueError(f"resampling strategy '{strategy}': expected 'closest' or 'random'")
            C, _ = kmeans(X[S], k, rng, n_iters)
            labels = assign(X, C)
    return C, labels


@dataclass
class Level:
    """One level of the hierarchy: centroids [k_t, d] and the parent of each level t-1 item
    (level 1: of each data point; level t > 1: of each level t-1 cluster)."""

    centroids: np.ndarray
    parent: np.ndarray


def hierarchical_kmeans(X: np.ndarray, n_clusters: Sequence[int], sample_sizes: Sequence[int],
                        n_resamples: Sequence[int] | int, rng: np.random.Generator, n_iters: int = 50) -> List[Level]:
    """Bottom-up hierarchical k-means with resampling: level 1 clusters the data, level t the
    centroids of level t-1 (k_t = n_clusters[t-1])."""
    if not (len(n_clusters) == len(sample_sizes)):
        raise ValueError(f"n_clusters {list(n_clusters)} and sample_sizes {list(sample_sizes)} differ in length")
    rs = [n_resamples] * len(n_clusters) if isinstance(n_resamples, int) else list(n_resamples)
    levels, points = [], np.asarray(X, dtype=np.float64)
    for k, m, r in zip(n_clusters, sample_sizes, rs):
        C, parent = resampling_kmeans(points, k, rng, m, r, n_iters)
        levels.append(Level(C, parent))
        points = C
    return levels


def flat_labels(levels: List[Level]) -> List[np.ndarray]:
    """The cluster of every data point at each level (level 1 = leaves)."""
    out, lab = [], levels[0].parent
    for t, lv in enumerate(levels):
        lab = lv.parent if t == 0 else lv.parent[lab]
        out.append(lab)
    return out


# --------------------------------------------------------------------------- balanced sampling (Sec. 3.3)


def best_cut(sizes: np.ndarray, T: int) -> int:
    """The largest integer x with sum_i min(x, s_i) <= T (max s_i when everything fits)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if T < 0 or (sizes < 0).any():
        raise ValueError(f"water-filling needs T >= 0 and sizes >= 0 (T={T}, min size {sizes.min()})")
    if sizes.sum() <= T:
        return int(sizes.max(initial=0))
    lo, hi = 0, int(sizes.max())  # sum(min(lo, s)) <= T < sum(min(hi, s))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if np.minimum(mid, sizes).sum() <= T:
            lo = mid
        else:
            hi = mid
    return lo


def water_filling(sizes: Sequence[int], T: int, rng: np.random.Generator) -> np.ndarray:
    """Per-cluster targets summing to min(T, sum s): min(x, s_i) with x = best_cut, and the remainder
    T - sum min(x, s_i) as +1 to distinct clusters chosen at random among those with s_i > x."""
    sizes = np.asarray(sizes, dtype=np.int64)
    x = best_cut(sizes, T)
    if sizes.sum() <= T:
        return sizes.copy()
    alloc = np.minimum(x, sizes)
    remainder = int(T - alloc.sum())
    alloc[rng.choice(np.flatnonzero(sizes > x), remainder, replace=False)] += 1
    return alloc


def hierarchical_sampling(levels: List[Level], T: int, rng: np.random.Generator, strategy: str = "r",
                          X: np.ndarray | None = None) -> np.ndarray:
    """Alg. 2: T indices of data points, balanced top-down over the hierarchy.

    At the top level the targets come from water-filling over the clusters' sizes (in data points);
    a cluster's target is split the same way over its children at the level below; a leaf cluster
    gives all its members if its target covers it, else `target` members drawn at random ('r') or the
    ones closest to its centroid ('c'; needs X).
    """
    labels = flat_labels(levels)
    n = len(labels[0])
    if T > n:
        raise ValueError(f"target size {T} exceeds the {n} points (the official code would silently return fewer)")
    if strategy not in ("r", "c"):
        raise ValueError(f"leaf sampling strategy '{strategy}': expected 'r' (random) or 'c' (closest)")
    members = [np.flatnonzero(labels[0] == j) for j in range(len(levels[0].centroids))]
    children = [None] + [[np.flatnonzero(levels[t].parent == j) for j in range(len(levels[t].centroids))]
                         for t in range(1, len(levels))]
    sizes = [np.bincount(lab, minlength=len(lv.centroids)) for lab, lv in zip(labels, levels)]
    picked: List[np.ndarray] = []

    def leaf(j: int, target: int):
        m = members[j]
        if target >= len(m):
            picked.append(m)
        elif strategy == "r":
            picked.append(rng.choice(m, target, replace=False))
        else:
            d = np.einsum("nd,nd->n", X[m] - levels[0].centroids[j], X[m] - levels[0].centroids[j])
            picked.append(m[np.argsort(d, kind="stable")[:target]])

    def recurse(t: int, j: int, target: int):  # t: 0-based level of cluster j
        if target == 0:
            return
        if t == 0:
            return leaf(j, target)
        kids = children[t][j]
        for kid, share in zip(kids, water_filling(sizes[t - 1][kids], target, rng)):
            recurse(t - 1, int(kid), int(share))

    top = len(levels) - 1
    for j, share in enumerate(water_filling(sizes[top], T, rng)):
        recurse(top, j, int(share))
    out = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    assert len(out) == T and len(np.unique(out)) == T, (len(out), T)
    return np.sort(out)


# --------------------------------------------------------------------------- balance of a subset


def concept_shares(concepts: Sequence[Sequence[int]], n_concepts: int) -> np.ndarray:
    """Share of each concept among all concept occurrences of a subset (a scene counts each digit it shows)."""
    flat = np.fromiter((c for cs in concepts for c in cs), dtype=np.int64)
    counts = np.bincount(flat, minlength=n_concepts).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def normalized_entropy(p: np.ndarray) -> float:
    """H(p) / log(K): 1 for a uniform distribution over the K concepts."""
    p = np.asarray(p, dtype=np.float64)
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / np.log(len(p)))
