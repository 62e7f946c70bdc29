"""Stage `report`: claims -> verdicts, plots and reports/align_your_steps/README.md (prose: report.md)."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import ci_cell, fmt, per_unit, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve
from papers.align_your_steps.config import AlignYourStepsConfig
from papers.align_your_steps.method import gaussian_klub_optimal

PAPER = "align_your_steps"
LABELS = {"ays": "AYS", "time_uniform": "time-uniform", "edm": "EDM (rho=7)", "log_snr": "log-SNR uniform"}


def main(argv=None):
    st = ReportStage.load(AlignYourStepsConfig, PAPER, argv)
    cfg, res, fid = st.cfg, st.results, st.results["metric"]
    o, cp, es = cfg.optimize, cfg.compare, cfg.early_stopping
    names, n0, hist, sched = ["ays", *cp.baselines], o.num_steps, res["history"], res["schedules"]
    runs = {n: [r for r in st.select(stage="compare", schedule=n) if n != "ays" or r["group"] == cp.baselines[0]]
            for n in names}  # one row per seed and NFE (the AYS rows are copied once per baseline group)
    ts = lambda xs, f=str: " ".join(map(f, xs))

    with st.figure("fid_vs_nfe", figsize=(5.2, 3.5)) as ax:
        for n in names:
            errorbar_curve(ax, runs[n], "nfe", cp.nfe, fid, "seed", LABELS[n], lw=2.2 if n == "ays" else 1.2)
        ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", xticks=cp.nfe,
               xticklabels=[str(n) for n in cp.nfe])
    with st.figure("schedules", figsize=(5.2, 3.5)) as ax:  # with the KLUB-optimal one for Gaussian data (App. A.3)
        for n in names:
            sig = np.asarray(sched[str(n0)][n]["sigmas"])
            ax.plot(np.linspace(0, 1, len(sig)), sig, marker="o", ms=3, label=LABELS[n], lw=2.2 if n == "ays" else 1.2)
        gauss = gaussian_klub_optimal(res["sigma_min"], res["sigma_max"], n0, o.c)[::-1]
        ax.plot(np.arange(n0 + 1) / n0, gauss, ls=":", color="gray", label=f"KLUB-optimal, Gaussian c={o.c:g}")
        ax.set(yscale="log", xlabel="step i / n", ylabel="noise level sigma", title=f"{n0}-step schedules")
        ax.legend(fontsize=7)
    with st.figure("optimization", figsize=(5.2, 3.5)) as ax:  # the coarse stage: KLUB and early-stopping FID
        sweeps = [h["sweep"] for h in hist]
        ax.errorbar(sweeps, [h["klub"] for h in hist], yerr=[2 * h["klub_se"] for h in hist], marker="o", capsize=3)
        ax.set(xlabel="pass of Algorithm 1", ylabel="KLUB estimate (±2 s.e.)", yscale="log", xticks=sweeps)
        if any(h["proxy"] is not None for h in hist):
            ax2 = ax.twinx()
            ax2.plot(sweeps, [h["proxy"] for h in hist], marker="s", color="C1")
            ax2.set_ylabel(f"early-stopping {fid}", color="C1")
    pair = (cp.baselines[0], "ays")
    side_by_side(*(st.out / "samples" / f"nfe{n0}_{a}.png" for a in pair), st.figures / f"samples_nfe{n0}.png",
                 [f"{LABELS[a]}, {n0} steps" for a in pair])

    keys = [k for k in st.rows[0] if "[" in k]
    results = table(["NFE", "schedule", *keys, "KLUB"], [
        [nfe, LABELS[n], *(ci_cell(per_unit(runs[n], k, nfe=nfe)) for k in keys), fmt(sched[str(nfe)][n]["klub"])]
        for nfe in cp.nfe for n in names])
    schedules = table(["NFE", "schedule", "timesteps"],
                      [[nfe, LABELS[n], ts(sched[str(nfe)][n]["timesteps"])] for nfe in cp.nfe for n in names])
    stages = table(["steps", "timesteps", "sigmas"],
                   [[s["num_steps"], ts(s["timesteps"]), ts(s["sigmas"], lambda v: fmt(v, 3))] for s in res["stages"]])
    passes = table(["pass", "changed", "KLUB", "s.e.", f"early-stopping {fid}", "timesteps"], [
        [f"**{h['sweep']}** (kept)" if h["kept"] else h["sweep"], "n/a" if h["changed"] is None else str(h["changed"]),
         fmt(h["klub"]), fmt(h["klub_se"]), fmt(h["proxy"]), ts(h["timesteps"])] for h in hist])

    protocol = sampling_protocol(
        cfg, res,
        sampler=f"DDIM eta={cfg.sampler.eta:g}, x0 clipped={cfg.sampler.clip_x0}, guidance "
                f"{cfg.sampler.guidance_scale}, schedule levels -> nearest training timestep, last level set to 0",
        compare=f"NFE {list(cp.nfe)}, {cp.num_samples} samples x seeds {list(cp.seeds)}",
        optimisation=f"{o.num_steps} steps from {o.init}, <= {o.max_sweeps} passes, {o.num_candidates} candidates, "
                     f"{o.num_draws} draws / estimate, {o.num_data} data points, {o.refine_rounds} subdivision(s)",
        **{"early stopping": f"FID of {es.num_samples} samples, seed {es.seed}, patience {es.patience}"
           if es.enabled else "off"})
    metrics = {"optimize_seconds": res["optimize_seconds"], "eval_seconds": res["eval_seconds"],
               "coarse_passes": max(sweeps), "kept_pass": next(h["sweep"] for h in hist if h["kept"])}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("sampler", "optimize", "early_stopping", "compare")}, metrics,
               fid=fid, o=o, cp=cp, es=es, n0=n0, init=LABELS.get(o.init, o.init), results_table=results,
               schedules_table=schedules, stages_table=stages, passes_table=passes,
               refined=[s["num_steps"] for s in res["stages"]])


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
