"""Stage `report`: claims -> verdicts, brightness histograms, tables and reports/sing_diffusion/README.md (prose:
report.md)."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import fmt, side_by_side, table
from common.report_stage import ReportStage, ci_table
from common.stats import mean_ci
from papers.sing_diffusion.config import SingDiffusionConfig

PAPER = "sing_diffusion"
SAMPLER_NAMES = {"ddim": "DDIM", "dpm_solver_2m": "DPM-Solver++(2M)"}
ARMS = {"baseline": ("tab:red", "base sampler"), "method": ("tab:blue", "+ SingDiffusion")}
SETTING = ("stage", "sampler", "spacing", "nfe")


def main(argv=None):
    st = ReportStage.load(SingDiffusionConfig, PAPER, argv)
    cfg, res, rows, fid, h = st.cfg, st.results, st.rows, st.results["metric"], st.cfg.histogram
    train, arrays = st.read("train.json"), np.load(st.out / "samples" / "brightness.npz")
    keys = list(dict.fromkeys(tuple(r[f] for f in SETTING) for r in rows))  # (stage, sampler, spacing, nfe) as written
    guided, where = [k for k in keys if k[0] == "guided"], lambda k, **more: {**dict(zip(SETTING, k)), **more}

    def paired(metric, k):  # per seed (method - baseline) / baseline for one setting
        b, m = ({r["seed"]: r[metric] for r in st.select(**where(k, arm=a))} for a in ARMS)
        return [(m[s] - b[s]) / abs(b[s]) for s in sorted(b) if s in m]

    def brightness(k):  # the base sampler's mean brightness over seeds, None where the setting was not run
        b = [r["brightness_mean"] for r in st.select(**where(k, arm="baseline"))]
        return float(np.mean(b)) if b else None

    panels = [("compare", h.sampler, h.spacing, h.nfe), *guided[:1]]  # data vs baseline vs SingDiffusion, first seed
    with st.figure("brightness_hist", figsize=(5.2 * len(panels), 3.6), ncols=len(panels), squeeze=False) as axes:
        for ax, k in zip(axes[0], panels):
            pre = "{}_{}_{}_nfe{}".format(*k)
            bins = np.linspace(0, max(float(np.max(arrays[f"{pre}_baseline"])), float(np.max(arrays["data"]))) + 2, 40)
            ax.hist(arrays["data"], bins=bins, density=True, histtype="stepfilled", alpha=0.3, color="gray",
                    label="data (held-out)")
            for arm, (color, label) in ARMS.items():
                ax.hist(arrays[f"{pre}_{arm}"], bins=bins, density=True, histtype="step", lw=1.6, color=color,
                        label=label)
            ax.set(xlabel="per-sample mean brightness (0-255)", ylabel="density", title=f"{SAMPLER_NAMES[k[1]]}, "
                   f"{k[3]} steps, {k[2]}, guidance {st.select(stage=k[0])[0]['guidance']:g}")
    with st.figure("effects", figsize=(12, 0.45 * len(keys) + 1.8), ncols=2, sharey=True) as axes:
        for ax, metric, title in ((axes[0], fid, "FID"), (axes[1], "brightness_w1", "brightness W1 to data")):
            m, lo, hi = np.array([mean_ci(paired(metric, k)) for k in keys]).T
            ax.errorbar(m, np.arange(len(keys)), xerr=[m - lo, hi - m], fmt="o", capsize=3)
            ax.axvline(0, color="gray", lw=0.8)
            ax.set(xlabel=f"relative change of {title}", title=title)
        axes[0].set_yticks(np.arange(len(keys)), [f"{s}: {SAMPLER_NAMES[a]}, {sp}, {n} steps" for s, a, sp, n in keys],
                           fontsize=8)
        axes[0].invert_yaxis()
        axes[0].figure.suptitle("SingDiffusion vs base sampler, paired by seed: (method - baseline) / baseline, "
                                "< 0 is better", fontsize=10)
    n0 = f"compare_{h.sampler}_{h.spacing}_nfe{h.nfe}"
    side_by_side(*(st.out / "samples" / f"{n0}_{arm}.png" for arm in ARMS), st.figures / "samples.png",
                 [f"{SAMPLER_NAMES[h.sampler]} {h.nfe} steps ({h.spacing})", "same x_1, + SingDiffusion first step"])

    cols = [fid, "brightness_mean", "brightness_w1"]
    cols += [fid.replace("fid", m) for m in ("class_acc", "precision", "recall")]
    results = table(["grid", "sampler", "spacing", "NFE", "t0", "arm", *cols], [
        [k[0], SAMPLER_NAMES[k[1]], k[2], k[3], st.select(**where(k))[0]["t0"], *row] for k in keys
        for row in ci_table(rows, [(arm, where(k, arm=arm)) for arm in ARMS], cols, "seed")])
    gap = table(["spacing", "NFE", "t0", "ab_t0", "sqrt(ab_t0)", "KL bound (nats)"], [
        [g["spacing"], g["nfe"], g["t0"], fmt(g["ab_t0"]), fmt(g["signal_scale"]), fmt(g["kl_bound_nats"])]
        for g in res["start_gap"]])
    cb, who = res["class_brightness"], {"data": "data (held-out)", **{a: label for a, (_, label) in ARMS.items()}}
    classes = table(["", *map(str, range(len(cb["data"])))],
                    [[who[k], *(f"{v:.1f}" for v in cb[k])] for k in who if k in cb])
    first_guided = guided and dict(zip(SETTING, guided[0]), sampler=SAMPLER_NAMES[guided[0][1]],
                                   brightness=brightness(guided[0]), unguided=brightness(("compare", *guided[0][1:])))

    g_guided, sd = cfg.guided.guidance_scale, res["sd15_reference"]
    protocol = sampling_protocol(
        cfg, res,
        samplers=f"DDIM (eta 0) and DPM-Solver++(2M), x0 clipped={cfg.clip_x0}",
        compare=f"{cfg.compare.samplers} x spacings {cfg.compare.spacings} x NFE {cfg.compare.nfe}, guidance "
                f"{cfg.compare.guidance_scale:g}",
        guided=f"{cfg.guided.samplers} x spacings {cfg.guided.spacings} x NFE {cfg.guided.nfe}, guidance {g_guided:g}",
        samples=f"{cfg.num_samples} x seeds {list(cfg.seeds)}",
        **{"SingDiffusion net": f"{res['net_params']:,} parameters, {train['steps']} steps "
                                f"({train['train_seconds']:.1f} s)"})
    metrics = {"eval_seconds": res["eval_seconds"], "net_train_seconds": train["train_seconds"],
               "net_max_abs_error_vs_class_means": train["max_abs_error_vs_class_means"],
               **{f"kl_bound_nats.{g['spacing']}.nfe{g['nfe']}": g["kl_bound_nats"] for g in res["start_gap"]}}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("net", "train", "clip_x0", "normalize_guidance", "num_samples", "seeds",
                                            "compare", "guided")}, metrics,
               fid=fid, h=h, train=train, g_guided=g_guided, sampler=SAMPLER_NAMES[h.sampler], sd=sd,
               sd_kl=0.5 * sd["ab_981"] * sd["latent_dim"], max_kl=max(g["kl_bound_nats"] for g in res["start_gap"]),
               gap_table=gap, results_table=results, class_table=classes, guided=first_guided)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
