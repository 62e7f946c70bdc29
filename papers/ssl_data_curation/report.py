"""Stage `report`: claims -> verdicts, plots and reports/ssl_data_curation/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish
from common.report import ci_cell, fmt, plt, table
from common.stats import mean_ci
from papers.ssl_data_curation.config import SslDataCurationConfig

PAPER = "ssl_data_curation"
HERE = Path(__file__).parent
SUBSETS = [("random", "random subset", "tab:gray"), ("flat", "flat k-means + balanced", "tab:orange"),
           ("hierarchical", "hierarchical k-means + resampling (curated)", "tab:blue")]


def errbar(values_per_seed):
    """(mean, lower error, upper error) arrays from [seeds][k] values, Student-t 95% interval."""
    arr = np.asarray(values_per_seed, dtype=float)
    stats = [mean_ci(arr[:, j].tolist()) for j in range(arr.shape[1])]
    m, lo, hi = (np.array(v) for v in zip(*stats))
    lo, hi = np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m)
    return m, m - lo, hi - m


def main(argv=None):
    cfg = load_config(SslDataCurationConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    cur = json.loads((out / "curation.json").read_text())
    res = json.loads((out / "results.json").read_text())
    rows = cur["rows"] + res["rows"]
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    c, st, tail = cfg.curation, cfg.study, cur["tail_digits"]
    by_subset = {name: [r for r in cur["rows"] if r["subset"] == name and r["stage"] == ("ablation" if name == "flat" else "balance")]
                 for name, _, _ in SUBSETS}

    # 1. per-digit share: pool vs random vs flat vs curated
    fig, ax = p.subplots(figsize=(7, 3.6))
    w = 0.2
    ax.bar(np.arange(10) - 1.5 * w, cur["pool"]["digit_shares"], w, color="black", label="pool (30k)" if cur["pool_size"] >= 1000 else "pool")
    for i, (name, label, color) in enumerate(SUBSETS):
        m, el, eh = errbar([r["digit_shares"] for r in by_subset[name]])
        ax.bar(np.arange(10) + (i - 0.5) * w, m, w, yerr=[el, eh], color=color, label=label, capsize=2)
    ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="uniform")
    ax.set(xlabel="digit (pool: long tail, 0 = head, 9 = tail)", ylabel="share of digit occurrences", yscale="log",
           xticks=range(10), title=f"Concept balance of subsets of T = {c.target_size} ({len(c.seeds)} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "digit_shares.png", dpi=120)
    p.close(fig)

    # 2. cluster-size distribution per level (in data points), every curation seed
    fig, ax = p.subplots(figsize=(5.6, 3.6))
    cmap = p.get_cmap("viridis")
    for s, h in cur["hierarchy"].items():
        for t, sizes in enumerate(h["cluster_sizes"]):
            v = np.sort(np.asarray(sizes))[::-1]
            ax.plot(np.arange(1, len(v) + 1) / len(v), v, color=cmap(t / max(1, len(h["cluster_sizes"]) - 1)),
                    alpha=0.7, label=f"level {t + 1} ({len(v)} clusters)" if s == str(c.seeds[0]) else None)
    ax.set(xlabel="cluster rank / number of clusters", ylabel="cluster size (data points)", yscale="log",
           title="Cluster sizes per level (all seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "cluster_sizes.png", dpi=120)
    p.close(fig)

    # 3. per-digit zero-shot accuracy of the CLIPs, with the tail marked
    runs = res["runs"]
    arms = [a for a, _, _ in SUBSETS if any(r["arm"] == a for r in runs)]
    fig, ax = p.subplots(figsize=(7, 3.6))
    w = 0.8 / max(1, len(arms))
    for i, (name, label, color) in enumerate([s for s in SUBSETS if s[0] in arms]):
        rs = [r for r in runs if r["arm"] == name]
        m, el, eh = errbar([[r[f"zero_shot_digit_{d}"] for d in range(10)] for r in rs])
        ax.bar(np.arange(10) + (i - (len(arms) - 1) / 2) * w, m, w, yerr=[el, eh], color=color, capsize=2,
               label=f"{label} ({len(rs)} seeds)")
    for d in tail:
        ax.axvspan(d - 0.5, d + 0.5, color="red", alpha=0.07)
    ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="test digit (shaded: tail digits)", ylabel="zero-shot accuracy", xticks=range(10),
           title="CLIP trained on curated vs random subsets (mean, 95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "tail_accuracy.png", dpi=120)
    p.close(fig)

    # tables
    bal = []
    pool = cur["pool"]
    bal.append(["pool (all)", "-", fmt(pool["digit_entropy"]), fmt(pool["digit_max_min"]), fmt(pool["tail_share"]),
                fmt(pool["colour_digit_entropy"])])
    for name, label, _ in SUBSETS:
        rs = by_subset[name]
        bal.append([label, len(rs)] + [ci_cell([r[k] for r in rs]) for k in
                                       ("digit_entropy", "digit_max_min", "tail_share", "colour_digit_entropy")])
    clip_tab = []
    metrics = [("zero_shot_digit", "digit (all)"), ("tail_acc", f"digit, tail {tail}"), ("head_acc", "digit, head"),
               ("zero_shot_colour", "colour"), ("zero_shot_count", "count"), ("retrieval_i2t_r1", "i2t R@1"),
               ("linear_probe_digit", "digit probe")]
    for name, label, _ in SUBSETS:
        rs = [r for r in runs if r["arm"] == name]
        if rs:
            clip_tab.append([label, len(rs)] + [ci_cell([r[k] for r in rs]) for k in (m for m, _ in metrics)])
    lv = " / ".join(str(k) for k in c.n_clusters)
    sections = [
        "## Concept balance of the curated subsets\n\n"
        f"Features: {cur['features']} ({cur['feature_dim']}-d, the shared teacher CLIP, stand-in for DINOv2). "
        f"Hierarchical k-means with {len(c.n_clusters)} levels of {lv} clusters (bottom-up), sample sizes "
        f"{c.sample_sizes}, resampling rounds {c.n_resamples} ('{c.resample_strategy}'), Lloyd iterations "
        f"{c.n_iters}; balanced sampling of T = {c.target_size} of {cur['pool_size']} scenes (leaf strategy "
        f"'{c.sampling_strategy}'). Flat = level 1 alone (k-means with {c.n_clusters[0]} clusters, not resampled) "
        f"+ the same balanced sampling. Concepts: the digits shown in a scene (each occurrence counts); entropy "
        f"normalised by log 10 (colour x digit: log 60). Mean [95% CI] over curation seeds {list(c.seeds)}.\n\n"
        + table(["subset", "seeds", "digit entropy", "max/min digit share", f"tail share {tail}",
                 "colour x digit entropy"], bal)
        + "\n\n![digit shares](figures/digit_shares.png)\n\n![cluster sizes](figures/cluster_sizes.png)",
        "## CLIP trained on curated vs random subsets\n\n"
        f"Same small CLIP ({'x'.join(str(x) for x in st.model.cnn_widths)} CNN, {st.model.text_layers}-layer text "
        f"tower), {st.train.samples:,} samples seen on each subset (T = {c.target_size}), seeds {list(st.seeds)} "
        "(seed s: curation s, random subset s, init s). Zero-shot accuracy on the clean test scenes (single-digit "
        "scenes for digit/colour); mean [95% CI].\n\n"
        + table(["trained on", "seeds"] + [label for _, label in metrics], clip_tab)
        + "\n\n![tail accuracy](figures/tail_accuracy.png)",
        "## Reading the result\n\n"
        "The paper curates web images with DINOv2 features, whose clusters follow semantic concepts. Here the "
        "features are a small CLIP's image embeddings of captioned digit scenes; they separate colour, count and "
        "layout at least as much as digit identity, and the pool is long-tailed only over digits (colours, sizes, "
        "positions and counts are uniform). Balancing over clusters therefore balances digits only as far as the "
        "clusters follow digits; the flat-k-means ablation shows how much the hierarchy and the resampling add. "
        "60% of the pool's captions are wrong or unrelated (common/scenes.py); curation on image features does not "
        "filter them, so both subsets carry the same caption noise on average.",
    ]
    protocol = {
        "profile": cfg.profile,
        "features": f"{cur['features']} ({cur['pool_size']} x {cur['feature_dim']})",
        "curation": f"levels {list(c.n_clusters)}, sample sizes {list(c.sample_sizes)}, resamples {list(c.n_resamples)}, "
                    f"Lloyd iterations {list(c.n_iters)}, T = {c.target_size}, seeds {list(c.seeds)}",
        "k-means time per seed": ", ".join(f"{fmt(h['kmeans_seconds'])} s" for h in cur["hierarchy"].values()),
        "CLIP": f"{st.train.samples:,} samples, batch {st.train.batch_size}, lr {st.train.lr}, seeds {list(st.seeds)}, "
                f"arms {list(st.arms)}",
        "wall time (curate)": f"{cur['seconds']:.0f} s",
        "wall time (experiment)": f"{res['seconds']:.0f} s",
    }
    intro = ("**Paper:** Vo et al., *Automatic Data Curation for Self-Supervised Learning: A Clustering-Based "
             "Approach*, TMLR 2024 ([arXiv:2405.15613](https://arxiv.org/abs/2405.15613); official code "
             "facebookresearch/ssl-data-curation). **Idea:** cluster the pool with hierarchical k-means "
             "(bottom-up, with resampling rounds that pull centroids out of dense regions), then sample a subset "
             "balanced over the clusters, top-down by water-filling. Implementation: "
             "[`papers/ssl_data_curation/method.py`](../../papers/ssl_data_curation/method.py).")
    summary = {}
    for name, _, _ in SUBSETS:
        for k in ("digit_entropy", "tail_share", "digit_max_min"):
            summary[f"{name}.{k}"] = float(np.mean([r[k] for r in by_subset[name]]))
    for a in arms:
        for k in ("zero_shot_digit", "tail_acc"):
            summary[f"clip.{a}.{k}"] = float(np.mean([r[k] for r in runs if r["arm"] == a]))
    summary.update({"curate_seconds": cur["seconds"], "experiment_seconds": res["seconds"]})
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Automatic data curation for SSL (Vo et al., 2024)", intro, verdicts, sections,
                   protocol, {k: d[k] for k in ("curation", "study", "features", "pool")}, summary,
                   [figs, out / "results.json", out / "curation.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
