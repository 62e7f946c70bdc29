"""Stage `report`: claims -> verdicts, brightness histograms, tables and reports/sing_diffusion/README.md."""

import numpy as np

from common.cli import run_main
from common.report import side_by_side, table
from common.report_stage import ReportStage
from common.stats import mean_ci

SAMPLER_NAMES = {"ddim": "DDIM", "dpm_solver_2m": "DPM-Solver++(2M)"}
SETTING, ARMS = ("stage", "sampler", "spacing", "nfe"), ("baseline", "method")
SERIES = {"data": dict(histtype="stepfilled", alpha=0.3, color="gray", label="data (held-out)"),  # hist. + class table
          "baseline": dict(histtype="step", lw=1.6, color="tab:red", label="base sampler"),
          "method": dict(histtype="step", lw=1.6, color="tab:blue", label="+ SingDiffusion")}


def main(argv=None):
    st = ReportStage.load(argv)
    res, fid, h, arrays = st.results, st.results["metric"], st.cfg.histogram, np.load(st.out / "samples/brightness.npz")
    keys = list(dict.fromkeys(tuple(r[f] for f in SETTING) for r in st.rows))  # the settings, in the order written
    guided, where = [k for k in keys if k[0] == "guided"], lambda k, **more: dict(zip(SETTING, k), **more)
    hk, stem = ("compare", h.sampler, h.spacing, h.nfe), "{}_{}_{}_nfe{}_{}".format  # stem(*setting, arm): file name

    def paired(metric, k):  # per seed (method - baseline) / baseline for one setting
        b, m = ({r["seed"]: r[metric] for r in st.select(**where(k, arm=a))} for a in ARMS)
        return [(m[s] - b[s]) / abs(b[s]) for s in sorted(b) if s in m]

    panels = [hk, *guided[:1]]  # data vs baseline vs SingDiffusion, first seed
    with st.figure("brightness_hist", figsize=(5.2 * len(panels), 3.6), ncols=len(panels), squeeze=False) as axes:
        for ax, k in zip(axes[0], panels):
            bins = np.linspace(0, max(arrays[stem(*k, "baseline")].max(), arrays["data"].max()) + 2, 40)
            for series, style in SERIES.items():
                ax.hist(arrays[series if series == "data" else stem(*k, series)], bins=bins, density=True, **style)
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
    side_by_side(*(st.out / "samples" / f"{stem(*hk, a)}.png" for a in ARMS), st.figures / "samples.png",
                 [f"{SAMPLER_NAMES[h.sampler]} {h.nfe} steps ({h.spacing})", "same x_1, + SingDiffusion first step"])

    cols = [fid, "brightness_mean", "brightness_w1"]
    cols += [fid.replace("fid", m) for m in ("class_acc", "precision", "recall")]
    results = st.ci_table(["grid", "sampler", "spacing", "NFE", "t0", "arm", *cols], [
        ((k[0], SAMPLER_NAMES[k[1]], *k[2:], st.select(**where(k))[0]["t0"], arm), where(k, arm=arm))
        for k in keys for arm in ARMS], cols)
    gap = table(["spacing", "NFE", "t0", "ab_t0", "sqrt(ab_t0)", "KL bound (nats)"], [[g[k] for k in (
        "spacing", "nfe", "t0", "ab_t0", "signal_scale", "kl_bound_nats")] for g in res["start_gap"]])
    cb = res["class_brightness"]
    classes = table(["", *map(str, range(len(cb["data"])))], [[s["label"], *(f"{v:.1f}" for v in cb[k])]
                                                              for k, s in SERIES.items() if k in cb])
    bright = {k: float(np.mean([r["brightness_mean"] for r in st.select(**where(k, arm="baseline"))])) for k in keys}
    first_guided = guided and dict(where(guided[0]), sampler=SAMPLER_NAMES[guided[0][1]], brightness=bright[guided[0]],
                                   unguided=bright.get(("compare", *guided[0][1:])))  # without guidance, if run
    st.publish(metrics={f"kl_bound_nats.{g['spacing']}.nfe{g['nfe']}": g["kl_bound_nats"] for g in res["start_gap"]},
               fid=fid, h=h, train=st.read("train.json"), sampler=SAMPLER_NAMES[h.sampler], gap_table=gap,
               results_table=results, class_table=classes, guided=first_guided)


if __name__ == "__main__":
    run_main(main)
