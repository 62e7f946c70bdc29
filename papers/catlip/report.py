"""Stage `report`: claims -> verdicts, plots and reports/catlip/README.md (prose: report.md), logged to MLflow."""

from common.config import to_dict
from common.report import ci_cell, fmt, select, table
from common.report_clip import cells, mean_of, values_band
from common.report_stage import ReportStage
from papers.catlip.config import CatlipConfig

PAPER = "catlip"
ARMS = {"baseline": ("CLIP", "tab:blue", "o"), "method": ("CatLIP", "tab:red", "s")}
CARD = ["zero_shot_digit", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1", "linear_probe_digit"]


def main(argv=None):
    st = ReportStage.load(CatlipConfig, PAPER, argv)
    cfg, res, runs, s, t = st.cfg, st.results, st.results["runs"], st.cfg.study, st.cfg.train
    vocab = st.read("vocabulary.json")
    main_rows, ep_rows = st.select(stage="main"), st.select(stage="epochs")
    seeds = sorted({r["seed"] for r in main_rows})
    one = lambda arm, seed: select(main_rows, arm=arm, seed=seed)[0]

    with st.figure("probe_vs_cost", figsize=(9, 3.4), ncols=2) as axes:  # the epochs study's points as curves
        for ax, key, xlabel in ((axes[0], "train_seconds", "training wall time (s)"),
                                (axes[1], "train_flops", "training FLOPs (forward + backward)")):
            for arm, (name, color, marker) in ARMS.items():
                rs, lab = select(main_rows, arm=arm), ax is axes[0]
                ax.scatter([r[key] for r in rs], [r["probe_digit"] for r in rs], color=color, marker=marker,
                           label=f"{name}, {t.samples:,} samples (per seed)" if lab else None)
                if ep := select(ep_rows, arm=arm):
                    per_sample = rs[0]["train_step_seconds"] / t.batch_size if key == "train_seconds" else rs[0]["flops_per_sample"]
                    xs = sorted({r["samples_seen"] for r in ep})
                    ax.plot([x * per_sample for x in xs], [mean_of(select(ep, samples_seen=x), "probe_digit") for x in xs],
                            color=color, ls="--", marker=marker, mfc="none",
                            label=f"{name}, epochs study ({s.epochs_subset} pairs)" if lab else None)
            ax.set(xscale="log", xlabel=xlabel, ylabel="digit linear probe accuracy")
        axes[0].legend(fontsize=7)
        axes[0].figure.suptitle("Probe accuracy vs training cost")
    with st.figure("training_curves", figsize=(9, 3.2), ncols=2) as axes:  # the two losses have different scales
        for ax, (arm, (name, color, _)) in zip(axes, ARMS.items()):
            for r in [r for r in runs if r["stage"] == "main" and r["arm"] == arm]:
                h = r.get("history", [])
                ax.plot([x["step"] for x in h], [x["loss"] for x in h], color=color,
                        alpha=0.5 + 0.5 * (r["seed"] == 0), label=f"seed {r['seed']}")
            ax.set(xlabel="optimizer step", ylabel="training loss", title=f"{name}: " + (
                "contrastive (InfoNCE)" if arm == "baseline" else "BCE, sum over |V| / batch"))
            ax.legend(fontsize=7)
    if ep_rows:
        epochs = sorted({r["epochs"] for r in ep_rows})
        with st.figure("probe_vs_epochs", figsize=(5, 3.4)) as ax:
            for arm, (name, color, marker) in ARMS.items():
                values_band(ax, epochs, [[r["probe_digit"] for r in select(ep_rows, epochs=e, arm=arm)] for e in epochs],
                            name, color, marker)
            ax.set(xscale="log", xlabel=f"epochs over {s.epochs_subset} pool pairs", ylabel="digit linear probe accuracy",
                   title=f"More epochs on small data ({len({r['seed'] for r in ep_rows})} seeds)")
            ax.set_xticks(epochs, [str(e) for e in epochs])
            ax.minorticks_off()
            ax.legend()

    b, m = (select(main_rows, arm=a)[0] for a in ARMS)
    ratio = lambda key: ci_cell([one("method", x)[key] / one("baseline", x)[key] for x in seeds])
    row = lambda label, key: [label, *(cells(select(main_rows, arm=a), [key])[0] for a in ARMS), ratio(key)]
    main_table = table(["", "CLIP (baseline)", "CatLIP (method)", "CatLIP / CLIP"], [
        row("digit linear probe, pooled backbone features (claim)", "probe_digit"),
        row("digit linear probe, tower output (CLIP: 64-d embedding; CatLIP: V logits)", "probe_digit_head"),
        row("seconds per step (interleaved timing, median)", "step_seconds"),
        row("seconds per step (whole training run incl. checkpoints)", "train_step_seconds"),
        ["FLOPs per sample (forward + backward)", *(fmt(x["flops_per_sample"]) for x in (b, m)),
         fmt(m["flops_per_sample"] / b["flops_per_sample"])],
        ["parameters", f"{b['params']:,}", f"{m['params']:,}", fmt(m["params"] / b["params"])]])
    clip_runs = [r for r in runs if r["stage"] == "main" and r["arm"] == "baseline"]
    card_table = table(["CLIP metric", "mean [95% CI]"], [[k, c] for k, c in zip(CARD, cells(clip_runs, CARD))])
    timing = lambda a, x: f"{fmt(one(a, x)['step_seconds'])}, {fmt(one(a, x)['train_step_seconds'])}"
    gap_table = table(["seed", "CLIP probe", "CatLIP probe", "gap (CLIP - CatLIP)", "CLIP s/step (timed, run)",
                       "CatLIP s/step (timed, run)"],
                      [[x, one("baseline", x)["probe_digit"], one("method", x)["probe_digit"],
                        st.select(stage="gap", seed=x)[0]["probe_gap"], timing("baseline", x), timing("method", x)]
                       for x in seeds])
    vocab_table = table(["index", "label", "training captions"], [[v["index"], v["label"], v["captions"]] for v in vocab])
    gains = st.select(stage="epochs_gain")
    late_gain = {a: ci_cell([r["late_gain"] for r in select(gains, arm=a)]) for a in ARMS}
    lab, mc = res["labels"], cfg.model
    protocol = {
        "profile": cfg.profile,
        "data": f"data/scenes `{res['train_split']}` ({res['n_train']:,} pairs), probe_train {res['n_probe_train']:,}, "
                f"test {res['n_test']:,}",
        "model": f"image tower {mc.image_tower} {list(mc.cnn_widths)}, embed {mc.embed_dim}; "
                 f"text {mc.text_layers} layers x {mc.text_width}",
        "training": f"{t.samples:,} samples, batch {t.batch_size}, LR {t.lr} ({t.lr_schedule}, warmup {t.warmup_steps}), "
                    f"wd {t.weight_decay}, grad clip {t.grad_clip}",
        "labels": f"mode {lab['mode']}, nouns_only {lab['nouns_only']}, V_tau {lab['v_tau']}, vocabulary size {lab['vocab_size']}",
        "seeds": f"main {seeds}; epochs study {s.epochs_seeds if ep_rows else 'off'}",
        "timing": f"median of {s.timing_steps} interleaved optimizer steps per arm and seed",
        "wall time (experiment)": f"{res['seconds']:.0f} s"}
    summary = {f"{a}.{k}": mean_of(select(main_rows, arm=a), k) for a in ARMS
               for k in ("probe_digit", "step_seconds", "flops_per_sample")}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("labels", "model", "train", "study")},
               {**summary, "vocab_size": lab["vocab_size"], "experiment_seconds": res["seconds"]},
               lab=lab, seeds=seeds, main_table=main_table, gap_table=gap_table, card_table=card_table,
               vocab_table=vocab_table, ep_seeds=sorted({r["seed"] for r in ep_rows}), late_gain=late_gain,
               second_last=sorted(s.epochs)[-2] if ep_rows else None)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
