"""Stage `report`: claims -> verdicts, plots and reports/catlip/README.md (prose: report.md), logged to MLflow."""

from common.cli import run_main
from common.report import ci_cell, ci_curve, fmt, per_unit, select, table
from common.report_clip import cells, mean_of, values_band
from common.report_stage import ReportStage

ARMS = {"baseline": ("CLIP", "tab:blue", "o", "contrastive (InfoNCE)"),
        "method": ("CatLIP", "tab:red", "s", "BCE, sum over |V| / batch")}
COST = {"train_seconds": "training wall time (s)", "train_flops": "training FLOPs (forward + backward)"}
CARD = ["zero_shot_digit", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1", "linear_probe_digit"]
ROWS = {"probe_digit": "digit linear probe, pooled backbone features (claim)",
        "probe_digit_head": "digit linear probe, tower output (CLIP: 64-d embedding; CatLIP: V logits)",
        "step_seconds": "seconds per step (interleaved timing, median)",
        "train_step_seconds": "seconds per step (whole training run incl. checkpoints)"}


def main(argv=None):
    st = ReportStage.load(argv)
    s, main_rows, ep_rows = st.cfg.study, st.select(stage="main"), st.select(stage="epochs")
    seeds, ep_seeds = (sorted({r["seed"] for r in rows}) for rows in (main_rows, ep_rows))
    one = lambda arm, seed: select(main_rows, arm=arm, seed=seed)[0]

    with st.figure("probe_vs_cost", figsize=(9, 3.4), ncols=2) as axes:  # the epochs study's points as curves
        for ax, (key, xlabel) in zip(axes, COST.items()):
            for arm, (name, color, marker, _) in ARMS.items():
                rs, ep, first = select(main_rows, arm=arm), select(ep_rows, arm=arm), ax is axes[0]
                ax.scatter([r[key] for r in rs], [r["probe_digit"] for r in rs], color=color, marker=marker,
                           label=f"{name}, {st.cfg.train.samples:,} samples (per seed)" if first else None)
                if ep:  # the epochs study, costed at the main runs' cost per sample seen
                    xs, per_sample = sorted({r["samples_seen"] for r in ep}), rs[0][key] / rs[0]["samples_seen"]
                    ax.plot([x * per_sample for x in xs], ci_curve(ep, "samples_seen", xs, "probe_digit")[0],
                            color=color, ls="--", marker=marker, mfc="none",
                            label=f"{name}, epochs study ({s.epochs_subset} pairs)" if first else None)
            ax.set(xscale="log", xlabel=xlabel, ylabel="digit linear probe accuracy")
        axes[0].figure.suptitle("Probe accuracy vs training cost")
    with st.figure("training_curves", figsize=(9, 3.2), ncols=2) as axes:  # the two losses have different scales
        for ax, (arm, (name, color, _, loss)) in zip(axes, ARMS.items()):
            for r in select(st.results["runs"], stage="main", arm=arm):
                ax.plot([x["step"] for x in r["history"]], [x["loss"] for x in r["history"]], color=color,
                        alpha=0.5 + 0.5 * (r["seed"] == 0), label=f"seed {r['seed']}")
            ax.set(xlabel="optimizer step", ylabel="training loss", title=f"{name}: {loss}")
    if ep_rows:
        epochs = sorted({r["epochs"] for r in ep_rows})
        with st.figure("probe_vs_epochs", figsize=(5, 3.4)) as ax:
            for arm, (name, color, marker, _) in ARMS.items():
                values_band(ax, epochs, [per_unit(ep_rows, "probe_digit", epochs=e, arm=arm) for e in epochs], name,
                            color, marker)
            ax.set(xscale="log", xlabel=f"epochs over {s.epochs_subset} pool pairs", xticks=epochs, xticklabels=epochs,
                   ylabel="digit linear probe accuracy", title=f"More epochs on small data ({len(ep_seeds)} seeds)")
            ax.minorticks_off()

    b, m = (one(a, seeds[0]) for a in ARMS)
    ratio = lambda key: ci_cell([one("method", x)[key] / one("baseline", x)[key] for x in seeds])
    main_table = table(["", "CLIP (baseline)", "CatLIP (method)", "CatLIP / CLIP"], [
        *([lab, *(ci_cell(per_unit(main_rows, k, arm=a)) for a in ARMS), ratio(k)] for k, lab in ROWS.items()),
        ["FLOPs per sample (forward + backward)", *(fmt(x["flops_per_sample"]) for x in (b, m)),
         fmt(m["flops_per_sample"] / b["flops_per_sample"])],
        ["parameters", f"{b['params']:,}", f"{m['params']:,}", fmt(m["params"] / b["params"])]])
    timing = lambda a, x: f"{fmt(one(a, x)['step_seconds'])}, {fmt(one(a, x)['train_step_seconds'])}"
    gap_table = table(["seed", "CLIP probe", "CatLIP probe", "gap (CLIP - CatLIP)", "CLIP s/step (timed, run)",
                       "CatLIP s/step (timed, run)"], [
        [x, *(one(a, x)["probe_digit"] for a in ARMS), st.select(stage="gap", seed=x)[0]["probe_gap"],
         *(timing(a, x) for a in ARMS)] for x in seeds])
    clip_runs = select(st.results["runs"], stage="main", arm="baseline")
    st.publish(metrics={**{f"{a}.{k}": mean_of(select(main_rows, arm=a), k) for a in ARMS
                           for k in ("probe_digit", "step_seconds", "flops_per_sample")},
                        "vocab_size": st.results["labels"]["vocab_size"]},
               seeds=seeds, ep_seeds=ep_seeds, main_table=main_table, gap_table=gap_table,
               card_table=table(["CLIP metric", "mean [95% CI]"], zip(CARD, cells(clip_runs, CARD))),
               vocab_table=table(["index", "label", "training captions"], map(dict.values, st.read("vocabulary.json"))),
               late_gain={a: ci_cell([r["late_gain"] for r in st.select(stage="epochs_gain", arm=a)]) for a in ARMS})


if __name__ == "__main__":
    run_main(main)
