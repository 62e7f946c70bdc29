"""Stage `report`: claims -> verdicts, plots and reports/new_knowledge/README.md (prose: report.md), to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, fmt, per_unit, plt, table
from common.report_clip import cells, stacked_shares, values_band
from common.report_stage import ReportStage
from papers.new_knowledge.method import CATEGORIES

ABBREV = {"HighlyKnown": "HK", "MaybeKnown": "MK", "WeaklyKnown": "WK", "Unknown": "Unk"}
COLORS = {"HighlyKnown": "tab:green", "MaybeKnown": "tab:olive", "WeaklyKnown": "tab:orange", "Unknown": "tab:red"}
POINTS = {"EARLY_STOP": "early_stop", "CONVERGENCE": "convergence"}  # run keys f"{point}_epoch", f"test_acc_{point}"
RUN = ["early_stop_epoch", "test_acc_early_stop", "test_acc_convergence", "train_acc_convergence"]
count = lambda x: "n/a" if x is None else (str(int(x)) if float(x).is_integer() else fmt(float(x)))  # exposures
ci_present = lambda vs: ci_cell([v for v in vs if v is not None]) if any(v is not None for v in vs) else "n/a"


def main(argv=None):
    st = ReportStage.load(argv)
    slick, res, s = st.read("slick.json"), st.results, st.cfg.study
    shares, lm, fit = list(s.unknown_shares), res["linear_model_pooled"], s.fit_speed_share
    of = lambda share: [r for r in res["runs"] if r["share"] == share]
    curve = lambda share, key: list(zip(*([e[key] for e in r["curve"]] for r in of(share))))  # [epoch][seed]
    by_freq = {f: [n[c] for c in CATEGORIES] for f, n in slick["by_frequency"].items() if int(f) >= 0}
    exposures, epochs = slick.get("exposures_per_frequency", {}), [c["epoch"] for c in of(fit)[0]["curve"]]
    shades = plt().get_cmap("coolwarm")(np.linspace(0, 1, len(shares)))

    if by_freq:
        with st.figure("slick_by_frequency", figsize=(5.6, 3.4)) as ax:
            frac = np.array(list(by_freq.values())) / np.maximum([[sum(n)] for n in by_freq.values()], 1)
            stacked_shares(ax, [f"{f}\n({count(exposures.get(f))})" if exposures else f for f in by_freq],
                           [(c, frac[:, i], COLORS[c]) for i, c in enumerate(CATEGORIES)])
            ax.set(xlabel="mentions in the corpus (exposures in pretraining)", ylabel="share of questions",
                   title="SliCK category by pretraining frequency")
    with st.figure("train_acc_by_category", figsize=(5.6, 3.4)) as ax:  # the fit-speed variant
        for c in CATEGORIES:
            if any(v is not None for vs in curve(fit, f"train_acc[{c}]") for v in vs):
                values_band(ax, epochs, curve(fit, f"train_acc[{c}]"), c, COLORS[c])
        ax.set(xlabel="fine-tuning epoch", ylabel="training accuracy (%)", ylim=(-2, 102),
               title=f"Fitting D ({fit:.0%} Unknown), {len(of(fit))} seeds")
    with st.figure("test_acc_vs_unknown", figsize=(5, 3.4)) as ax:
        for (point, key), color in zip(POINTS.items(), ("tab:blue", "tab:red")):
            values_band(ax, [100 * x for x in shares], [[r[f"test_acc_{key}"] for r in of(x)] for x in shares],
                        point, color, "o")
        ax.set(xlabel="% Unknown examples in D", ylabel="test accuracy (%)", title="Test accuracy vs % Unknown")
    with st.figure("test_acc_over_epochs", figsize=(5.6, 3.4)) as ax:
        for x, color in zip(shares, shades):
            values_band(ax, epochs, curve(x, "test_acc"), f"{x:.0%} Unknown", color)
        ax.set(xlabel="fine-tuning epoch", ylabel="test accuracy (%)", title="Test accuracy during fine-tuning")
    with st.figure("linear_model", figsize=(4.4, 4)) as ax:  # pooled fit over seeds, variants and epochs 1..E
        for x, color in zip(shares, shades):
            kn, unk, acc = np.array([(c["fitted[Known]"] / r["size"], c["fitted[Unknown]"] / r["size"], c["test_acc"])
                                     for r in of(x) for c in r["curve"][1:]]).T
            ax.scatter(lm["beta_0"] + lm["beta_kn"] * kn + lm["beta_unk"] * unk, acc, s=8, color=color,
                       label=f"{x:.0%} Unknown")
        ax.plot(ax.get_xlim(), ax.get_xlim(), color="gray", lw=0.8)
        ax.set(xlabel="predicted test accuracy (%)", ylabel="observed test accuracy (%)",
               title=f"Eq. 1: R² = {fmt(lm['r2'])}")

    at = lambda r, key: r["curve"][r[f"{key}_epoch"]]  # the curve entry at EARLY_STOP or CONVERGENCE
    comp = lambda x: ", ".join(f"{ABBREV[c]} {np.mean([r['composition'][c] for r in of(x)]):.0f}" for c in CATEGORIES)
    lin = [[f"seed {r['seed']}", *(r[k] for k in lm)] for r in st.select(stage="linear_model", arm="method")]
    st.publish(
        metrics={**res["summary"], **{f"linear_pooled.{k}": v for k, v in lm.items()}},
        slick=slick, freqs=bool(by_freq), epoch0=ci_cell([r["curve"][0]["test_acc"] for r in of(shares[0])]),
        fit_speed=[ci_cell(per_unit(st.rows, "mean_train_acc", stage="fit_speed", arm=arm))
                   for arm in ("baseline", "method")],  # Known, Unknown
        counts_table=table(["split", *CATEGORIES], [[k, *map(n.get, CATEGORIES)] for k, n in slick["counts"].items()]),
        freq_table=table(["mentions", "exposures", *CATEGORIES],
                         [[f, count(exposures.get(f)), *n] for f, n in by_freq.items()]),
        run_table=table(["% Unknown", "|D|", "composition", "EARLY_STOP epoch", "test acc EARLY_STOP",
                         "test acc CONVERGENCE", "train acc CONVERGENCE"],
                        [[f"{x:.0%}", of(x)[0]["size"], comp(x), *cells(of(x), RUN)] for x in shares]),
        per_cat_table=table(["% Unknown", "point", *CATEGORIES], [
            [f"{x:.0%}", point, *(ci_present([at(r, key)[f"test_acc[{c}]"] for r in of(x)]) for c in CATEGORIES)]
            for x in shares for point, key in POINTS.items()]),
        lin_table=table(["fit", "β0", "β_kn", "β_unk", "R²"], [
            *lin, ["pooled", *lm.values()], ["paper (PaLM 2-M, in-distribution)", 36.9, 7.3, -8.3, 0.86]]))


if __name__ == "__main__":
    run_main(main)
