"""Stage `report`: claims -> verdicts, plots and reports/time_shift/README.md (prose: report.md), logged to MLflow."""

from common.config import resolve, to_dict
from common.data import load_split, to_model_range
from common.publish import sampling_protocol
from common.report import fmt, side_by_side, table
from common.report_stage import ReportStage, ci_table, errorbar_curve, nfe_axis
from papers.time_shift.config import TimeShiftConfig
from papers.time_shift.method import sample_variance

PAPER = "time_shift"


def main(argv=None):
    st = ReportStage.load(TimeShiftConfig, PAPER, argv)
    cfg, res, rows, fid, cp, sw = st.cfg, st.results, st.rows, st.results["metric"], st.cfg.compare, st.cfg.sweep
    paper, tuned = f"w={res['paper_window']} c={res['paper_cutoff']}", f"w={res['window']} c={res['cutoff']}"

    with st.figure("fid_vs_nfe", figsize=(5.2, 3.5)) as ax:  # 95% intervals over sampling seeds
        for s in cp.samplers:
            for arm, group, ls, prefix in (("baseline", "paper", ":", ""), ("method", "paper", "-", "TS-"),
                                           ("method", "tuned", "--", "TS(tuned)-")):
                errorbar_curve(ax, rows, "nfe", cp.nfe, fid, "seed", f"{prefix}{s.upper()}", stage="compare",
                               sampler=s, arm=arm, group=group, ls=ls)
        nfe_axis(ax, cp.nfe, fid)
    with st.figure("shifts", figsize=(5.2, 3.5)) as ax:
        for key, steps in res["shifts"].items():
            ax.plot([s["nominal"] for s in steps], [s["mean"] - s["nominal"] for s in steps], marker="o", label=key)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel="nominal next timestep t'", ylabel="mean shift t_s - t'",
               title=f"tuned: {tuned.replace(' ', ', ')}; paper: {paper.replace(' ', ', ')}")
        ax.legend(fontsize=7)
    n0 = min(cp.nfe)
    side_by_side(st.out / "samples" / f"ddim_nfe{n0}_baseline.png", st.out / "samples" / f"ddim_nfe{n0}_paper.png",
                 st.figures / f"samples_ddim_nfe{n0}.png",
                 [f"DDIM, {n0} steps", f"TS-DDIM ({paper.replace(' ', ', ')}), {n0} steps"])

    keys = [k for k in rows[0] if "[" in k] + ["seconds"]
    x_train, _ = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    v0 = float(sample_variance(to_model_range(x_train).double()).mean())  # image's own pixel variance
    arms = {("baseline", "paper"): "baseline", ("method", "paper"): f"TS {paper}", ("method", "tuned"): f"TS tuned {tuned}"}
    compare = table(["sampler", "NFE", "arm"] + keys, ci_table(rows, [
        ((s, n, label), dict(stage="compare", sampler=s, nfe=n, arm=a, group=g))
        for s in cp.samplers for n in cp.nfe for (a, g), label in arms.items()], keys, "seed"))
    sweep = table(["window \\ cutoff"] + [str(c) for c in sw.cutoff],
                  [[w] + [fmt(res["sweep_mean_fid"][f"{w},{c}"]) for c in sw.cutoff] for w in sw.window])
    overhead = table(["sampler", "NFE", "TS setting", "overhead"], ci_table(rows, [
        ((s, n, g), dict(stage="overhead", sampler=s, nfe=n, group=g))
        for s in cp.samplers for n in cp.nfe for g in ("paper", "tuned")], ["overhead"], "seed"))
    protocol = sampling_protocol(
        cfg, res,
        samplers=f"{list(cp.samplers)}, {cfg.spacing} respacing, x0 clipped={cfg.clip_x0}, guidance {cfg.guidance_scale}",
        compare=f"NFE {list(cp.nfe)}, {cp.num_samples} samples x seeds {list(cp.seeds)}",
        sweep=f"{sw.sampler} NFE {sw.nfe}, windows {list(sw.window)} x cutoffs {list(sw.cutoff)}, "
              f"{sw.num_samples} samples x seeds {list(sw.seeds)}")
    metrics = {"window": res["window"], "cutoff": res["cutoff"], "eval_seconds": res["eval_seconds"],
               "data_pixel_variance": v0}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("spacing", "clip_x0", "guidance_scale", "sweep", "compare")}, metrics,
               fid=fid, cp=cp, sw=sw, n0=n0, v0=v0, compare_table=compare, sweep_table=sweep,
               overhead_table=overhead)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
