"""Stage `report`: claims -> verdicts, plots and reports/new_knowledge/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.config import to_dict
from common.report import ci_cell, fmt, plt, table
from common.report_clip import stacked_shares, values_band
from common.report_stage import ReportStage
from papers.new_knowledge.config import NewKnowledgeConfig
from papers.new_knowledge.method import CATEGORIES

PAPER = "new_knowledge"
ABBREV = {"HighlyKnown": "HK", "MaybeKnown": "MK", "WeaklyKnown": "WK", "Unknown": "Unk"}
COLORS = {"HighlyKnown": "tab:green", "MaybeKnown": "tab:olive", "WeaklyKnown": "tab:orange", "Unknown": "tab:red"}


def count(x) -> str:
    """An exposure count: integer when whole."""
    return "n/a" if x is None else (str(int(x)) if float(x).is_integer() else fmt(float(x)))


def pct(share: float) -> str:
    return f"{int(round(100 * share))}%"


def main(argv=None):
    st = ReportStage.load(NewKnowledgeConfig, PAPER, argv)
    slick, res, s = st.read("slick.json"), st.results, st.cfg.study
    runs, shares, seeds, lm = res["runs"], list(s.unknown_shares), list(s.seeds), res["linear_model_pooled"]
    of = lambda share: [r for r in runs if r["share"] == share]
    shade = lambda i: plt().get_cmap("coolwarm")(i / max(1, len(shares) - 1))
    freqs, exposures = [f for f in slick["by_frequency"] if int(f) >= 0], slick.get("exposures_per_frequency", {})
    epochs = [c["epoch"] for c in of(s.fit_speed_share)[0]["curve"]]

    if freqs:
        tot = np.array([sum(slick["by_frequency"][f].values()) for f in freqs], dtype=float)
        with st.figure("slick_by_frequency", figsize=(5.6, 3.4)) as ax:
            stacked_shares(ax, [f"{f}\n({count(exposures.get(f))})" if exposures else f for f in freqs], [
                (c, np.array([slick["by_frequency"][f][c] for f in freqs]) / np.maximum(tot, 1), COLORS[c])
                for c in CATEGORIES])
            ax.set(xlabel="mentions in the corpus (exposures in pretraining)", ylabel="share of questions",
                   title="SliCK category by pretraining frequency")
    with st.figure("train_acc_by_category", figsize=(5.6, 3.4)) as ax:  # the fit-speed variant
        for c in CATEGORIES:
            per_epoch = list(zip(*([e[f"train_acc[{c}]"] for e in r["curve"]] for r in of(s.fit_speed_share))))
            if any(v is not None for vs in per_epoch for v in vs):
                values_band(ax, epochs, per_epoch, c, COLORS[c])
        ax.set(xlabel="fine-tuning epoch", ylabel="training accuracy (%)", ylim=(-2, 102),
               title=f"Fitting D ({pct(s.fit_speed_share)} Unknown), {len(of(s.fit_speed_share))} seeds")
    with st.figure("test_acc_vs_unknown", figsize=(5, 3.4)) as ax:  # EARLY_STOP and CONVERGENCE
        for key, label, color in (("test_acc_early_stop", "EARLY_STOP", "tab:blue"),
                                  ("test_acc_convergence", "CONVERGENCE", "tab:red")):
            values_band(ax, [100 * x for x in shares], [[r[key] for r in of(x)] for x in shares], label, color, "o")
        ax.set(xlabel="% Unknown examples in D", ylabel="test accuracy (%)", title="Test accuracy vs % Unknown")
    with st.figure("test_acc_over_epochs", figsize=(5.6, 3.4)) as ax:
        for i, x in enumerate(shares):
            values_band(ax, epochs, list(zip(*([e["test_acc"] for e in r["curve"]] for r in of(x)))),
                        f"{pct(x)} Unknown", shade(i))
        ax.set(xlabel="fine-tuning epoch", ylabel="test accuracy (%)", title="Test accuracy during fine-tuning")
    with st.figure("linear_model", figsize=(4.4, 4)) as ax:  # pooled fit over seeds, variants and epochs
        for i, x in enumerate(shares):
            kn, unk, acc = (np.array(v) for v in zip(*((c["fitted[Known]"] / r["size"], c["fitted[Unknown]"] / r["size"],
                                                        c["test_acc"]) for r in of(x) for c in r["curve"][1:])))
            ax.scatter(lm["beta_0"] + lm["beta_kn"] * kn + lm["beta_unk"] * unk, acc, s=8, color=shade(i),
                       label=f"{pct(x)} Unknown")
        ax.plot(ax.get_xlim(), ax.get_xlim(), color="gray", lw=0.8)
        ax.set(xlabel="predicted test accuracy (%)", ylabel="observed test accuracy (%)", title=f"Eq. 1: R² = {fmt(lm['r2'])}")

    counts = table(["split"] + list(CATEGORIES), [[sp] + [slick["counts"][sp][c] for c in CATEGORIES] for sp in slick["counts"]])
    by_freq = table(["mentions", "exposures"] + list(CATEGORIES), [
        [f, count(exposures.get(f))] + [slick["by_frequency"][f][c] for c in CATEGORIES] for f in freqs])
    run_table = table(["% Unknown", "|D|", "composition", "EARLY_STOP epoch", "test acc EARLY_STOP", "test acc CONVERGENCE",
                       "train acc CONVERGENCE"], [
        [pct(x), of(x)[0]["size"], ", ".join(f"{ABBREV[c]} {np.mean([r['composition'][c] for r in of(x)]):.0f}"
                                             for c in CATEGORIES),
         *(ci_cell([r[k] for r in of(x)]) for k in ("early_stop_epoch", "test_acc_early_stop", "test_acc_convergence",
                                                    "train_acc_convergence"))] for x in shares])
    at_point = lambda r, point: r["curve"][r["early_stop_epoch"] if point == "EARLY_STOP" else -1]
    cat_cell = lambda vs: ci_cell([v for v in vs if v is not None]) if any(v is not None for v in vs) else "n/a"
    per_cat = table(["% Unknown", "point"] + list(CATEGORIES), [
        [pct(x), point, *(cat_cell([at_point(r, point)[f"test_acc[{c}]"] for r in of(x)]) for c in CATEGORIES)]
        for x in shares for point in ("EARLY_STOP", "CONVERGENCE")])
    lin = [[f"seed {r['seed']}", r["beta_0"], r["beta_kn"], r["beta_unk"], r["r2"]]
           for r in st.select(stage="linear_model", arm="method")]
    lin_table = table(["fit", "β0", "β_kn", "β_unk", "R²"], lin + [
        ["pooled", lm["beta_0"], lm["beta_kn"], lm["beta_unk"], lm["r2"]], ["paper (PaLM 2-M, in-distribution)", 36.9, 7.3, -8.3, 0.86]])
    fit_speed = {arm: ci_cell([r["mean_train_acc"] for r in st.select(stage="fit_speed", arm=arm)])
                 for arm in ("baseline", "method")}
    sl = st.cfg.slick
    protocol = {
        "profile": st.cfg.profile, "base LM": f"{slick['base_lm']} ({slick['base_lm_params']:,} parameters)",
        "SliCK": f"{sl.n_prompts} prompts x (1 greedy + {sl.n_samples} samples), T={sl.temperature}, top-{sl.top_k}, "
                 f"{sl.k_shot}-shot, estimator {sl.estimator}; {slick['forward_passes']:,} forward passes for "
                 f"{slick['inferences']:,} inferences",
        "study": f"shares {shares}, seeds {seeds}, {s.epochs} epochs, batch {s.batch_size}, lr {s.lr} "
                 f"({s.lr_schedule}), dropout {s.dropout}",
        "dev / test questions": f"{res['dev_size']} / {res['test_size']}",
        "wall time (categorize)": f"{slick['seconds']:.0f} s", "wall time (finetune)": f"{res['finetune_seconds']:.0f} s"}
    metrics = {**res["summary"], **{f"linear_pooled.{k}": v for k, v in lm.items()},
               **{f"slick.{sp}.{c}": n for sp, cs in slick["counts"].items() for c, n in cs.items()},
               "finetune_seconds": res["finetune_seconds"], "categorize_seconds": slick["seconds"]}
    d = to_dict(st.cfg)
    st.publish(protocol, {k: d[k] for k in ("slick", "study", "base_lm", "questions")}, metrics, sl=sl, seeds=seeds,
               fit_share=pct(s.fit_speed_share), freqs=freqs, fit_speed=fit_speed, counts_table=counts,
               freq_table=by_freq, run_table=run_table, per_cat_table=per_cat, lin_table=lin_table,
               epoch0=ci_cell([r["curve"][0]["test_acc"] for r in of(shares[0])]))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
