"""Stage `report`: claims -> verdicts, plots and reports/qqt_data_filtering/README.md (prose: report.md), logged to
MLflow."""

import numpy as np

from common.config import to_dict
from common.report import ci_cell, fmt, table
from common.report_clip import stacked_shares
from common.report_stage import ReportStage
from papers.qqt_data_filtering import method
from papers.qqt_data_filtering.config import QQTConfig

PAPER = "qqt_data_filtering"
COLORS = ["tab:green", "tab:olive", "tab:orange", "tab:red", "tab:purple", "tab:brown"]
# A reference check derived here (official functions, illustrative parameters) and the official repository's
# fitted T-MARS / ImageNet parameters (results/parameter_values.jsonl, id tmars_imagenet1k_utility).
REF = dict(a=0.022, b=[-0.13, -0.11, -0.095, -0.085], tau=3.0, d=0.1, S=12.8e6)
OFFICIAL_FIT = dict(a=0.025, b=[-0.16, -0.125, -0.1, -0.085], tau=[6.7272727272727275, 8.545454545454547,
                                                                   5.2727272727272725, 2.2727272727272725], d=0.1)
PAPER_BUDGETS = [32e6, 64e6, 128e6, 640e6]


def k(n: float) -> str:
    return f"{n / 1000:g}k" if n < 1e6 else f"{n / 1e6:g}M"


def paper_table() -> str:
    rows = []
    for n in PAPER_BUDGETS:
        e = method.mix_errors(n, REF["a"], REF["b"], [REF["tau"]] * 4, REF["d"], REF["S"])
        f = method.mix_errors(n, *(OFFICIAL_FIT[x] for x in ("a", "b", "tau", "d")), REF["S"], sort_by_utility=True)
        rows.append([k(n)] + [f"{x:.4f}" for x in e] + [method.best_pool_count(e), method.best_pool_count(f)])
    return table(["samples", "p=1", "p=2", "p=3", "p=4", "best p", "best p (official fitted T-MARS params)"], rows)


def main(argv=None):
    st = ReportStage.load(QQTConfig, PAPER, argv)
    res, cfg, law = st.results, st.cfg, st.cfg.law
    fits, mixes, seeds, budgets, P, S = (res[x] for x in ("fits", "mixes", "seeds", "budgets", "n_buckets", "bucket_size"))
    ps, kinds, err = list(range(1, P + 1)), list(res["buckets"][0]["noise"]), f"error (1 - {res['metric']})"
    at = lambda n: [m for m in mixes if m["samples"] == n]

    with st.figure("buckets", figsize=(5, 3.2)) as ax:
        stacked_shares(ax, ps, [(kind, [b["noise"][kind] for b in res["buckets"]], c)
                                for kind, c in zip(kinds, COLORS)])
        ax.set(xlabel="bucket (1 = highest teacher score)", ylabel="share of pairs",
               title=f"Quality buckets of S = {S} pairs (ground truth)")
    with st.figure("bucket_fits", figsize=(4.2 * len(seeds), 3.4), ncols=len(seeds), squeeze=False) as axes:
        for ax, seed in zip(axes[0], seeds):
            for f in (f for f in fits if f["seed"] == seed):
                c = COLORS[(f["bucket"] - 1) % len(COLORS)]
                xs = np.linspace(S, max(max(f["samples"]), max(budgets)), 200)
                ax.plot(xs, [method.effective_utility(x, f["a"], f["b"], f["tau"], f["d"], S, law.normalizer) for x in xs],
                        color=c, lw=1, label=f"bucket {f['bucket']}: b={f['b']:.3f}, τ={f['tau']:.2f}")
                ax.scatter(f["samples"], f["observed"], color=c, s=12)
            ax.axvline(max(fits[0]["samples"]), color="gray", lw=0.6, ls=":")
            ax.set(xscale="log", xlabel="samples seen", ylabel=err, title=f"seed {seed}")
            ax.legend(fontsize=6)
        ax.figure.suptitle("Per-bucket fits of Eq. 3-4 (dots: observed; dotted line: last fitted point)", fontsize=9)
    with st.figure("mixes_pred_vs_obs", figsize=(3.0 * len(budgets), 3.2), ncols=len(budgets), squeeze=False,
                   sharey=True) as axes:
        for ax, n in zip(axes[0], budgets):
            for m in at(n):
                ax.plot(ps, m["observed"], "o-", color="tab:blue", alpha=0.6, lw=1, ms=4)
                ax.plot(ps, m["predicted"], "s--", color="tab:red", alpha=0.6, lw=1, ms=4)
            ax.set(xlabel="p (top buckets mixed)", xticks=ps, title=f"{k(n)} ({n / S:g} passes over S)")
        axes[0][0].set_ylabel(err)
        axes[0][0].plot([], [], "o-", color="tab:blue", label="observed")
        axes[0][0].plot([], [], "s--", color="tab:red", label="predicted (Eq. 5)")
        ax.figure.suptitle(f"Top-p mixes: one line per seed ({len(seeds)} seeds)", fontsize=9)
    with st.figure("best_p_vs_budget", figsize=(4.6, 3.2)) as ax:  # seeds offset sideways
        for j, seed in enumerate(seeds):
            recs = sorted((m for m in mixes if m["seed"] == seed), key=lambda m: m["samples"])
            xs = [m["samples"] * (1 + 0.04 * (j - (len(seeds) - 1) / 2)) for m in recs]
            for key, style, color in (("observed", "o-", "tab:blue"), ("predicted", "s--", "tab:red")):
                ax.plot(xs, [m[f"best_p_{key}"] for m in recs], style, color=color, alpha=0.7, label=key if j == 0 else None)
        ax.set(xscale="log", xlabel="samples seen (budget)", ylabel="best p", yticks=ps,
               title="Best number of top buckets vs compute")

    alt = "tau_i" if law.tau_times_p else "tau_i * p"
    bucket_table = table(["bucket", "size", "clean", *kinds[1:], "teacher score"], [
        [b["bucket"], b["size"], f"{b['clean_share']:.3f}", *(f"{b['noise'][x]:.3f}" for x in kinds[1:]),
         f"{b['score_min']:.3f} – {b['score_max']:.3f}"] for b in res["buckets"]])
    fit_table = table(["seed", "bucket", "b", "tau", "a", "d", "SSE"], [
        [f["seed"], f["bucket"], *(fmt(f[x]) for x in ("b", "tau", "a", "d")), f"{f['loss']:.2e}"] for f in fits])
    mix_table = table(["samples", "p", "observed", "predicted", f"predicted ({alt})"], [
        [k(n), i + 1, *(ci_cell([m[x][i] for m in at(n)]) for x in ("observed", "predicted", "predicted_alt_tau"))]
        for n in budgets for i in range(P)])
    best_table = table(["seed", "samples", "passes over S", "observed", "predicted", f"predicted ({alt})"], [
        [m["seed"], k(m["samples"]), f"{m['passes_over_S']:g}", m["best_p_observed"], m["best_p_predicted"],
         m["best_p_predicted_alt_tau"]] for m in sorted(mixes, key=lambda m: (m["seed"], m["samples"]))])
    curves = [(n, *(np.mean([m[x] for m in at(n)], axis=0) for x in ("observed", "predicted"))) for n in budgets]
    spread_table = table(["samples", "observed spread", "observed best p", "predicted spread", "predicted best p"], [
        [k(n), *(v for c in (o, p) for v in (f"{c.max() - c.min():.3f}", method.best_pool_count(c)))]
        for n, o, p in curves])
    pred = st.select(stage="prediction")
    protocol = {
        "profile": cfg.profile,
        "pool": f"captioned scenes `pool` ({res['pool_size']:,} pairs) ranked by `models/scene_clip/pool_scores.npy`",
        "model": f"CLIP, CNN {list(cfg.model.cnn_widths)} image tower, text {cfg.model.text_layers}x{cfg.model.text_width}, "
                 f"embed {cfg.model.embed_dim}",
        "training": f"batch {cfg.train.batch_size}, lr {cfg.train.lr} ({cfg.train.lr_schedule}, {cfg.train.warmup_steps} "
                    f"warm-up steps), weight decay {cfg.train.weight_decay}",
        "evaluation": f"error = 1 - {res['metric']} on the test split (zero-shot digit / colour / count)",
        "seeds": f"{seeds} (training: init + data order)",
        "runs": f"{len(res['runs'])}, {sum(r['train_seconds'] for r in res['runs']):.0f} s of training+evaluation",
        "wall time (experiment)": f"{res['experiment_seconds']:.0f} s"}
    metrics = {f"bucket{b['bucket']}.clean_share": b["clean_share"] for b in res["buckets"]}
    metrics.update({f"seed{f['seed']}.bucket{f['bucket']}.{x}": f[x] for f in fits for x in ("b", "tau")})
    metrics.update({f"{x}_mean": float(np.mean([r[x] for r in pred])) for x in ("mae", "best_p_disagreement")})
    d = to_dict(cfg)
    st.publish(protocol, {x: d[x] for x in ("buckets", "study", "law", "train")},
               {**metrics, "experiment_seconds": res["experiment_seconds"]}, law=law, P=P, S=S, kinds=kinds, alt=alt,
               budget_names=[k(n) for n in budgets], pred=pred, mae=ci_cell([r["mae"] for r in pred]),
               disagreement=ci_cell([r["best_p_disagreement"] for r in pred]), bucket_table=bucket_table,
               fit_table=fit_table, mix_table=mix_table, best_table=best_table, spread_table=spread_table,
               paper_table=paper_table())


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
