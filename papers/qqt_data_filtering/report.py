"""Stage `report`: claims -> verdicts, plots and reports/qqt_data_filtering/README.md (prose: report.md), MLflow."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, fmt, table
from common.report_clip import stacked_shares
from common.report_stage import ReportStage
from papers.qqt_data_filtering import method

COLORS = ["tab:green", "tab:olive", "tab:orange", "tab:red", "tab:purple", "tab:brown"]
STYLE = {"observed": ("o-", "tab:blue", "observed"), "predicted": ("s--", "tab:red", "predicted (Eq. 5)")}
# A reference check derived here (official functions, illustrative parameters) and the official repository's
# fitted T-MARS / ImageNet parameters (results/parameter_values.jsonl, id tmars_imagenet1k_utility).
REF = dict(a=0.022, bs=[-0.13, -0.11, -0.095, -0.085], taus=[3.0] * 4, d=0.1, S=12.8e6)
OFFICIAL_FIT = dict(a=0.025, bs=[-0.16, -0.125, -0.1, -0.085], d=0.1, S=12.8e6, sort_by_utility=True,
                    taus=[6.7272727272727275, 8.545454545454547, 5.2727272727272725, 2.2727272727272725])
PAPER_BUDGETS = [32e6, 64e6, 128e6, 640e6]
k = lambda n: f"{n / 1000:g}k" if n < 1e6 else f"{n / 1e6:g}M"


def main(argv=None):
    st = ReportStage.load(argv)
    res, law = st.results, st.cfg.law
    fits, mixes, seeds, budgets, P, S = map(res.get, ("fits", "mixes", "seeds", "budgets", "n_buckets", "bucket_size"))
    ps, kinds, err = list(range(1, P + 1)), list(res["buckets"][0]["noise"]), f"error (1 - {res['metric']})"
    at = lambda n: [m for m in mixes if m["samples"] == n]
    curve = lambda n, key: np.mean([m[key] for m in at(n)], axis=0)  # seed-mean error over p at budget n

    with st.figure("buckets", figsize=(5, 3.2)) as ax:
        stacked_shares(ax, ps, [(x, [b["noise"][x] for b in res["buckets"]], c) for x, c in zip(kinds, COLORS)])
        ax.set(xlabel="bucket (1 = highest teacher score)", ylabel="share of pairs",
               title=f"Quality buckets of S = {S} pairs (ground truth)")
    with st.figure("bucket_fits", figsize=(4.2 * len(seeds), 3.4), ncols=len(seeds), squeeze=False) as axes:
        for ax, seed in zip(axes[0], seeds):
            for f in (f for f in fits if f["seed"] == seed):
                c, xs = COLORS[(f["bucket"] - 1) % len(COLORS)], np.linspace(S, max(*f["samples"], *budgets), 200)
                ys = [method.effective_utility(x, f["a"], f["b"], f["tau"], f["d"], S, law.normalizer) for x in xs]
                ax.plot(xs, ys, color=c, lw=1, label=f"bucket {f['bucket']}: b={f['b']:.3f}, τ={f['tau']:.2f}")
                ax.scatter(f["samples"], f["observed"], color=c, s=12)
            ax.axvline(max(fits[0]["samples"]), color="gray", lw=0.6, ls=":")
            ax.set(xscale="log", xlabel="samples seen", ylabel=err, title=f"seed {seed}")
            ax.legend(fontsize=6)
        ax.figure.suptitle("Per-bucket fits of Eq. 3-4 (dots: observed; dotted line: last fitted point)", fontsize=9)
    with st.figure("mixes_pred_vs_obs", figsize=(3.0 * len(budgets), 3.2), ncols=len(budgets), squeeze=False,
                   sharey=True) as axes:
        for ax, n in zip(axes[0], budgets):
            for j, m in enumerate(at(n)):
                for key, (style, color, label) in STYLE.items():
                    ax.plot(ps, m[key], style, color=color, alpha=0.6, lw=1, ms=4,
                            label=label if ax is axes[0][0] and j == 0 else None)
            ax.set(xlabel="p (top buckets mixed)", xticks=ps, title=f"{k(n)} ({n / S:g} passes over S)")
        axes[0][0].set_ylabel(err)
        ax.figure.suptitle(f"Top-p mixes: one line per seed ({len(seeds)} seeds)", fontsize=9)
    with st.figure("best_p_vs_budget", figsize=(4.6, 3.2)) as ax:  # seeds offset sideways
        for j, seed in enumerate(seeds):
            recs = sorted((m for m in mixes if m["seed"] == seed), key=lambda m: m["samples"])
            xs = [m["samples"] * (1 + 0.04 * (j - (len(seeds) - 1) / 2)) for m in recs]
            for key, (style, color, _) in STYLE.items():
                ax.plot(xs, [m[f"best_p_{key}"] for m in recs], style, color=color, alpha=0.7,
                        label=key if j == 0 else None)
        ax.set(xscale="log", xlabel="samples seen (budget)", ylabel="best p", yticks=ps,
               title="Best number of top buckets vs compute")

    alt, pred = "tau_i" if law.tau_times_p else "tau_i * p", st.select(stage="prediction")
    bucket_table = table(["bucket", "size", "clean", *kinds[1:], "teacher score"], [
        [b["bucket"], b["size"], f"{b['clean_share']:.3f}", *(f"{b['noise'][x]:.3f}" for x in kinds[1:]),
         f"{b['score_min']:.3f} – {b['score_max']:.3f}"] for b in res["buckets"]])
    fit_table = table(["seed", "bucket", "b", "tau", "a", "d", "SSE"], [
        [f["seed"], f["bucket"], *(fmt(f[x]) for x in ("b", "tau", "a", "d")), f"{f['loss']:.2e}"] for f in fits])
    mix_table = table(["samples", "p", "observed", "predicted", f"predicted ({alt})"], [
        [k(n), p, *(ci_cell([m[x][p - 1] for m in at(n)]) for x in ("observed", "predicted", "predicted_alt_tau"))]
        for n in budgets for p in ps])
    best_table = table(["seed", "samples", "passes over S", "observed", "predicted", f"predicted ({alt})"], [
        [m["seed"], k(m["samples"]), f"{m['passes_over_S']:g}", m["best_p_observed"], m["best_p_predicted"],
         m["best_p_predicted_alt_tau"]] for m in sorted(mixes, key=lambda m: (m["seed"], m["samples"]))])
    spread_table = table(["samples", "observed spread", "observed best p", "predicted spread", "predicted best p"], [
        [k(n), *(v for c in (curve(n, "observed"), curve(n, "predicted"))
                 for v in (f"{c.max() - c.min():.3f}", method.best_pool_count(c)))] for n in budgets])
    paper = {n: method.mix_errors(n, **REF) for n in PAPER_BUDGETS}
    paper_table = table(["samples", "p=1", "p=2", "p=3", "p=4", "best p", "best p (official fitted T-MARS params)"], [
        [k(n), *(f"{x:.4f}" for x in e), method.best_pool_count(e),
         method.best_pool_count(method.mix_errors(n, **OFFICIAL_FIT))] for n, e in paper.items()])
    st.publish(metrics={f"{x}_mean": float(np.mean([r[x] for r in pred])) for x in ("mae", "best_p_disagreement")},
               law=law, P=P, S=S, alt=alt, budget_names=[k(n) for n in budgets], pred=pred,
               mae=ci_cell([r["mae"] for r in pred]), disagreement=ci_cell([r["best_p_disagreement"] for r in pred]),
               bucket_table=bucket_table, fit_table=fit_table, mix_table=mix_table, best_table=best_table,
               spread_table=spread_table, paper_table=paper_table)


if __name__ == "__main__":
    run_main(main)
