"""Stage `curate`: curated vs random subsets of the pool and their balance over concepts (paper Sec. 3-4).

For each seed s (curation.seeds):
- hierarchical k-means with resampling (method.hierarchical_kmeans) on the pool's features, then
  hierarchical balanced sampling of T points (method.hierarchical_sampling): the curated subset;
- a uniform random subset of T points (the uncurated baseline at equal size);
- the ablation: flat k-means + balanced sampling (level 1 of the same hierarchy alone; the finest
  level is not resampled, as in the official 4-level web config), i.e. no hierarchy, no resampling.
Balance over concepts = the digit classes shown in the selected scenes (the pool is long-tailed over
digits: common/scenes.py), and colour x digit: normalised entropy, max/min share, tail-digit share.
Writes reports/ssl_data_curation/curation.json (rows carry `seed`) and subsets.npz (the indices).
"""

import json
import sys
import time

import numpy as np

from common.config import UnreadableInputError, load_config, reading, resolve
from common.data import check_full_data
from common.scenes import COLOURS, load_full_pool, load_scenes
from common.teacher import teacher_embeddings
from papers.ssl_data_curation import method
from papers.ssl_data_curation.config import SslDataCurationConfig

PAPER = "ssl_data_curation"
ARMS = {"random": "baseline", "hierarchical": "method", "flat": "baseline"}  # claims: stage balance / ablation


def load_pool(cfg):
    """cpu / tiny: the shared captioned scenes' pool split; full: the web image pool's shards at `pool`."""
    web = load_full_pool(cfg, PAPER, "pool", needs="the paper's web image pool as webdataset shards (LVD-2B-like, "
                         "743M images after copy detection), one pair per row of the DINOv2 features at `features`")
    return load_scenes(resolve(cfg, cfg.paths.data, "scenes"), "pool") if web is None else web[0]


def load_features(cfg, pool_size: int) -> np.ndarray:
    """The pool's image embeddings: cpu / tiny the shared teacher's; full the DINOv2 ViT-L/14 features at
    `features` ([pool_size, D] .npy, rows in the pool's shard order)."""
    path = check_full_data(cfg, PAPER, ("features",), needs="the pool's DINOv2 ViT-L/14 embeddings, an [N, 1024] "
                           ".npy in the order of the `pool` shards")["features"]
    if path is None:
        return teacher_embeddings(cfg, pool_size).astype(np.float64)
    with reading(path, hint=f"papers/{PAPER}/params.yaml: features"):
        X = np.load(path)
    if X.ndim != 2 or len(X) != pool_size:
        raise UnreadableInputError(f"{path} has shape {X.shape}, not [{pool_size}, D] for the {pool_size} pairs of "
                                   f"`pool` (papers/{PAPER}/params.yaml): embed the same shards, in their order")
    return X.astype(np.float64)


def balance(concepts, n_concepts: int, tail=None) -> dict:
    """Balance of a subset over concepts: shares, normalised entropy, max/min share, tail share."""
    p = method.concept_shares(concepts, n_concepts)
    counts = np.bincount([c for cs in concepts for c in cs], minlength=n_concepts)
    # max/min share = max/min count; a concept absent from the subset counts as one occurrence (finite ratio)
    out = {"entropy": method.normalized_entropy(p), "max_min_ratio": float(counts.max() / max(counts.min(), 1)),
           "shares": p.tolist()}
    if tail is not None:
        out["tail_share"] = float(p[list(tail)].sum())
    return out


def subset_metrics(idx, digits, colour_digit, tail) -> dict:
    d = balance([digits[i] for i in idx], 10, tail)
    cd = balance([colour_digit[i] for i in idx], 10 * len(COLOURS))
    return {"digit_entropy": d["entropy"], "digit_max_min": d["max_min_ratio"], "tail_share": d["tail_share"],
            "digit_shares": d["shares"], "colour_digit_entropy": cd["entropy"]}


def validate(cfg, n: int):
    c = cfg.curation
    where = f"papers/{PAPER}/params.yaml: curation"
    if not (len(c.n_clusters) == len(c.sample_sizes) == len(c.n_resamples) == len(c.n_iters)):
        raise ValueError(f"{where}.n_clusters / sample_sizes / n_resamples / n_iters need one entry per level")
    if any(b >= a for a, b in zip(c.n_clusters, c.n_clusters[1:])) or c.n_clusters[0] > n:
        raise ValueError(f"{where}.n_clusters={c.n_clusters} must decrease level by level and not exceed the {n} points")
    if not 0 < c.target_size <= n:
        raise ValueError(f"{where}.target_size={c.target_size} must be in [1, {n}] (the pool size)")
    if not c.tail_digits or any(not 0 <= d <= 9 for d in c.tail_digits):
        raise ValueError(f"{where}.tail_digits={c.tail_digits} must be digits 0-9")


def main(argv=None):
    cfg = load_config(SslDataCurationConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    t_start = time.time()
    c = cfg.curation
    pool = load_pool(cfg)
    X = load_features(cfg, len(pool))
    validate(cfg, len(X))
    colour_idx = {name: k for k, name in enumerate(COLOURS)}
    colour_digit = [[colour_idx[col] * 10 + d for d, col in zip(ds, cs)] for ds, cs in zip(pool.digits, pool.colours)]
    tail = list(c.tail_digits)
    rows, hierarchy, subsets = [], {}, {}
    pool_balance = subset_metrics(np.arange(len(pool)), pool.digits, colour_digit, tail)
    for seed in c.seeds:
        t0 = time.time()
        levels = []
        points = X
        for k, m, r, it in zip(c.n_clusters, c.sample_sizes, c.n_resamples, c.n_iters):  # bottom-up (Sec. 3.2)
            C, parent = method.resampling_kmeans(points, k, np.random.default_rng([seed, 0, len(levels)]), m, r, it,
                                                 strategy=c.resample_strategy)
            levels.append(method.Level(C, parent))
            points = C
        t_kmeans = time.time() - t0
        picks = {
            "hierarchical": method.hierarchical_sampling(levels, c.target_size, np.random.default_rng([seed, 1]),
                                                         c.sampling_strategy, X),
            "flat": method.hierarchical_sampling(levels[:1], c.target_size, np.random.default_rng([seed, 2]),
                                                 c.sampling_strategy, X),
            "random": np.sort(np.random.default_rng([seed, 3]).choice(len(X), c.target_size, replace=False)),
        }
        flat = method.flat_labels(levels)
        hierarchy[str(seed)] = {
            "cluster_sizes": [np.bincount(lab, minlength=k).tolist() for lab, k in zip(flat, c.n_clusters)],
            "kmeans_seconds": t_kmeans,
        }
        for name, idx in picks.items():
            subsets[f"{name}_{seed}"] = idx
            m = subset_metrics(idx, pool.digits, colour_digit, tail)
            if name in ("random", "hierarchical"):
                rows.append({"stage": "balance", "arm": ARMS[name], "subset": name, "seed": seed, **m})
            if name in ("flat", "hierarchical"):
                rows.append({"stage": "ablation", "arm": ARMS[name], "subset": name, "seed": seed, **m})
        print(f"seed {seed}: k-means {t_kmeans:.1f} s; digit entropy "
              + ", ".join(f"{r['subset']} {r['digit_entropy']:.3f}" for r in rows if r["seed"] == seed), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "subsets.npz", **subsets)
    res = {"rows": rows, "pool": pool_balance, "hierarchy": hierarchy, "pool_size": len(X),
           "features": cfg.features or "models/scene_clip/pool_image_embeddings.npy", "feature_dim": int(X.shape[1]),
           "tail_digits": tail, "seconds": time.time() - t_start}
    (out / "curation.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'curation.json'} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
