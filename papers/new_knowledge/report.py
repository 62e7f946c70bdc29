"""Stage `report`: claims -> verdicts, plots and reports/new_knowledge/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish
from common.report import ci_cell, fmt, plt, table
from common.stats import mean_ci
from papers.new_knowledge.config import NewKnowledgeConfig
from papers.new_knowledge.method import CATEGORIES

PAPER = "new_knowledge"
HERE = Path(__file__).parent
ABBREV = {"HighlyKnown": "HK", "MaybeKnown": "MK", "WeaklyKnown": "WK", "Unknown": "Unk"}
COLORS = {"HighlyKnown": "tab:green", "MaybeKnown": "tab:olive", "WeaklyKnown": "tab:orange", "Unknown": "tab:red",
          "Known": "tab:blue"}


def count(x) -> str:
    """An exposure count: integer when whole."""
    return "n/a" if x is None else (str(int(x)) if float(x).is_integer() else fmt(float(x)))


def pct(share: float) -> str:
    return f"{int(round(100 * share))}%"


def band(ax, xs, per_seed, label, color=None, marker=None):
    """Mean over seeds with a 95% interval band; per_seed: [seeds][len(xs)] (None entries skipped)."""
    arr = np.array([[np.nan if v is None else v for v in s] for s in per_seed], dtype=float)
    stats = [mean_ci(arr[~np.isnan(arr[:, j]), j].tolist()) if (~np.isnan(arr[:, j])).any() else (np.nan,) * 3
             for j in range(arr.shape[1])]
    m, lo, hi = (np.array(v) for v in zip(*stats))
    ax.plot(xs, m, label=label, color=color, marker=marker)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(np.asarray(xs)[ok], lo[ok], hi[ok], alpha=0.2, color=color)


def main(argv=None):
    cfg = load_config(NewKnowledgeConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    slick = json.loads((out / "slick.json").read_text())
    res = json.loads((out / "results.json").read_text())
    runs, rows, st, sl = res["runs"], res["rows"], cfg.study, cfg.slick
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    shares = list(st.unknown_shares)

    # 1. SliCK categories vs pretraining frequency
    freqs = [f for f in slick["by_frequency"] if int(f) >= 0]
    exposures = slick.get("exposures_per_frequency", {})
    if freqs:
        fig, ax = p.subplots(figsize=(5.6, 3.4))
        bottom = np.zeros(len(freqs))
        tot = np.array([sum(slick["by_frequency"][f].values()) for f in freqs], dtype=float)
        for c in CATEGORIES:
            v = np.array([slick["by_frequency"][f][c] for f in freqs]) / np.maximum(tot, 1)
            ax.bar(range(len(freqs)), v, bottom=bottom, color=COLORS[c], label=c)
            bottom += v
        ax.set_xticks(range(len(freqs)), [f"{f}\n({count(exposures.get(f))})" if exposures else f for f in freqs])
        ax.set(xlabel="mentions in the corpus (exposures in pretraining)", ylabel="share of questions",
               title="SliCK category by pretraining frequency")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
        fig.tight_layout()
        fig.savefig(figs / "slick_by_frequency.png", dpi=120)
        p.close(fig)

    # 2. training accuracy per category over epochs (the fit-speed variant)
    fit = [r for r in runs if r["share"] == st.fit_speed_share]
    epochs = [c["epoch"] for c in fit[0]["curve"]]
    fig, ax = p.subplots(figsize=(5.6, 3.4))
    for c in CATEGORIES:
        per_seed = [[e[f"train_acc[{c}]"] for e in r["curve"]] for r in fit]
        if any(v is not None for s in per_seed for v in s):
            band(ax, epochs, per_seed, c, COLORS[c])
    ax.set(xlabel="fine-tuning epoch", ylabel="training accuracy (%)", ylim=(-2, 102),
           title=f"Fitting D ({pct(st.fit_speed_share)} Unknown), {len(fit)} seeds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "train_acc_by_category.png", dpi=120)
    p.close(fig)

    # 3. test accuracy vs the Unknown share, EARLY_STOP and CONVERGENCE
    seeds = list(st.seeds)
    fig, ax = p.subplots(figsize=(5, 3.4))
    xs = [100 * s for s in shares]
    for key, label, color in (("test_acc_early_stop", "EARLY_STOP", "tab:blue"),
                              ("test_acc_convergence", "CONVERGENCE", "tab:red")):
        per_seed = [[next(r[key] for r in runs if r["seed"] == sd and r["share"] == s) for s in shares] for sd in seeds]
        band(ax, xs, per_seed, label, color, marker="o")
    ax.set(xlabel="% Unknown examples in D", ylabel="test accuracy (%)", title="Test accuracy vs % Unknown")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "test_acc_vs_unknown.png", dpi=120)
    p.close(fig)

    # 4. test accuracy over epochs per variant
    fig, ax = p.subplots(figsize=(5.6, 3.4))
    cmap = p.get_cmap("coolwarm")
    for i, s in enumerate(shares):
        rs = [r for r in runs if r["share"] == s]
        band(ax, epochs, [[e["test_acc"] for e in r["curve"]] for r in rs], f"{pct(s)} Unknown",
             cmap(i / max(1, len(shares) - 1)))
    ax.set(xlabel="fine-tuning epoch", ylabel="test accuracy (%)", title="Test accuracy during fine-tuning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "test_acc_over_epochs.png", dpi=120)
    p.close(fig)

    # 5. the linear model (pooled fit over seeds, variants and epochs)
    lm = res["linear_model_pooled"]
    fig, ax = p.subplots(figsize=(4.4, 4))
    for i, s in enumerate(shares):
        pts = [(c["fitted[Known]"] / r["size"], c["fitted[Unknown]"] / r["size"], c["test_acc"])
               for r in runs if r["share"] == s for c in r["curve"][1:]]
        kn, unk, acc = (np.array(v) for v in zip(*pts))
        pred = lm["beta_0"] + lm["beta_kn"] * kn + lm["beta_unk"] * unk
        ax.scatter(pred, acc, s=8, color=cmap(i / max(1, len(shares) - 1)), label=f"{pct(s)} Unknown")
    lims = ax.get_xlim()
    ax.plot(lims, lims, color="gray", lw=0.8)
    ax.set(xlabel="predicted test accuracy (%)", ylabel="observed test accuracy (%)",
           title=f"Eq. 1: R² = {fmt(lm['r2'])}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "linear_model.png", dpi=120)
    p.close(fig)

    # tables
    counts = table(["split"] + list(CATEGORIES),
                   [[sp] + [slick["counts"][sp][c] for c in CATEGORIES] for sp in slick["counts"]])
    by_freq = table(["mentions", "exposures"] + list(CATEGORIES),
                    [[f, count(exposures.get(f))] + [slick["by_frequency"][f][c] for c in CATEGORIES]
                     for f in freqs]) if freqs else "_No pretraining frequencies (external questions)._"
    run_tab = []
    for s in shares:
        rs = [r for r in runs if r["share"] == s]
        comp = ", ".join(f"{ABBREV[c]} {np.mean([r['composition'][c] for r in rs]):.0f}" for c in CATEGORIES)
        run_tab.append([pct(s), rs[0]["size"], comp, ci_cell([r["early_stop_epoch"] for r in rs]),
                        ci_cell([r["test_acc_early_stop"] for r in rs]),
                        ci_cell([r["test_acc_convergence"] for r in rs]),
                        ci_cell([r["train_acc_convergence"] for r in rs])])
    per_cat = []
    for s in shares:
        rs = [r for r in runs if r["share"] == s]
        for point, idx in (("EARLY_STOP", None), ("CONVERGENCE", -1)):
            cells = []
            for c in CATEGORIES:
                vals = [(r["curve"][r["early_stop_epoch"]] if idx is None else r["curve"][idx])[f"test_acc[{c}]"] for r in rs]
                cells.append(ci_cell([v for v in vals if v is not None]) if any(v is not None for v in vals) else "n/a")
            per_cat.append([pct(s), point] + cells)
    lin = [[f"seed {r['seed']}", r["beta_0"], r["beta_kn"], r["beta_unk"], r["r2"]]
           for r in rows if r["stage"] == "linear_model" and r["arm"] == "method"]
    lin.append(["pooled", lm["beta_0"], lm["beta_kn"], lm["beta_unk"], lm["r2"]])
    lin.append(["paper (PaLM 2-M, in-distribution)", 36.9, 7.3, -8.3, 0.86])
    fit_rows = [r for r in rows if r["stage"] == "fit_speed"]
    sections = [
        "## SliCK categories of the base model\n\n"
        f"P_correct from {sl.n_prompts} random {sl.k_shot}-shot prompts per question (exemplars: dev questions of "
        f"the same relation), 1 greedy answer + {sl.n_samples} samples (T = {sl.temperature}, top-{sl.top_k}) per "
        f"prompt, exact match; estimator `{sl.estimator}`.\n\n" + counts +
        "\n\nBy pretraining frequency (train + test questions): facts never stated are Unknown by construction, "
        "the rest is measured.\n\n" + by_freq +
        ("\n\n![SliCK by frequency](figures/slick_by_frequency.png)" if freqs else ""),
        "## Fitting Known and Unknown examples\n\n"
        f"Training accuracy per category on D with {pct(st.fit_speed_share)} Unknown (mean and 95% interval over "
        f"seeds {seeds}). Mean training accuracy over epochs 1..{st.epochs}: Known "
        + ci_cell([r["mean_train_acc"] for r in fit_rows if r["arm"] == "baseline"]) + ", Unknown "
        + ci_cell([r["mean_train_acc"] for r in fit_rows if r["arm"] == "method"]) + ".\n\n"
        "![training accuracy by category](figures/train_acc_by_category.png)",
        "## Test accuracy vs the share of Unknown examples\n\n"
        f"|D| fixed per seed (per relation: min(#Known, #Unknown) train questions); EARLY_STOP = best dev epoch, "
        f"CONVERGENCE = epoch {st.epochs}. Mean [95% CI] over seeds {seeds}; composition = mean count per "
        "category. Before fine-tuning (epoch 0) the base model answers "
        + ci_cell([r["curve"][0]["test_acc"] for r in runs if r["share"] == shares[0]])
        + "% of the test questions in this format.\n\n"
        + table(["% Unknown", "|D|", "composition", "EARLY_STOP epoch", "test acc EARLY_STOP", "test acc CONVERGENCE",
                 "train acc CONVERGENCE"], run_tab)
        + "\n\n![test accuracy vs % Unknown](figures/test_acc_vs_unknown.png)\n\n"
        "![test accuracy over epochs](figures/test_acc_over_epochs.png)\n\n"
        "Test accuracy per SliCK category of the test questions:\n\n"
        + table(["% Unknown", "point"] + list(CATEGORIES), per_cat),
        "## Linear model (Eq. 1)\n\n"
        "Accuracy = β0 + β_kn · N_kn/|D| + β_unk · N_unk/|D|, N = training examples fitted at that epoch; one row "
        "per epoch (1..E) per variant, fitted per seed and pooled.\n\n"
        + table(["fit", "β0", "β_kn", "β_unk", "R²"], lin) + "\n\n![linear model](figures/linear_model.png)",
        "## Reading the result\n\n"
        "The paper fine-tunes PaLM 2-M on EntityQuestions; here a 2-layer GPT-2 is pretrained from scratch on "
        "real country facts stated with controlled frequency (root stages `build_knowledge`, `pretrain_lm`), so "
        "only directions are comparable, not accuracies. Test questions are disjoint from the fine-tuning "
        "questions; a test question the base model does not know stays mostly unanswerable whatever D is.",
    ]
    protocol = {
        "profile": cfg.profile,
        "base LM": f"{slick['base_lm']} ({slick['base_lm_params']:,} parameters)",
        "SliCK": f"{sl.n_prompts} prompts x (1 greedy + {sl.n_samples} samples), T={sl.temperature}, top-{sl.top_k}, "
                 f"{sl.k_shot}-shot, estimator {sl.estimator}; {slick['forward_passes']:,} forward passes for "
                 f"{slick['inferences']:,} inferences",
        "study": f"shares {shares}, seeds {seeds}, {st.epochs} epochs, batch {st.batch_size}, lr {st.lr} "
                 f"({st.lr_schedule}), dropout {st.dropout}",
        "dev / test questions": f"{res['dev_size']} / {res['test_size']}",
        "wall time (categorize)": f"{slick['seconds']:.0f} s",
        "wall time (finetune)": f"{res['finetune_seconds']:.0f} s",
    }
    intro = ("**Paper:** Gekhman et al., *Does Fine-Tuning LLMs on New Knowledge Encourage Hallucinations?*, "
             "EMNLP 2024 ([arXiv:2405.05904](https://arxiv.org/abs/2405.05904)). **Idea:** categorise what a model "
             "knows with SliCK (P_correct from few-shot sampling), then fine-tune on sets with a controlled share "
             "of Unknown facts: they are fitted slowly and, once fitted, make the model hallucinate. "
             "Implementation: [`papers/new_knowledge/method.py`](../../papers/new_knowledge/method.py).")
    metrics = {**res["summary"], **{f"linear_pooled.{k}": v for k, v in lm.items()},
               **{f"slick.{sp}.{c}": n for sp, cs in slick["counts"].items() for c, n in cs.items()},
               "finetune_seconds": res["finetune_seconds"], "categorize_seconds": slick["seconds"]}
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "New knowledge and hallucinations (Gekhman et al., EMNLP 2024)", intro, verdicts,
                   sections, protocol, {k: d[k] for k in ("slick", "study", "base_lm", "questions")}, metrics,
                   [figs, out / "results.json", out / "slick.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
