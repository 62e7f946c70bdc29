"""Stage `report`: claims -> verdicts, plots and reports/time_shift/README.md (prose: report.md), logged to MLflow."""

from common.cli import run_main
from common.config import resolve
from common.data import load_split, to_model_range
from common.report import side_by_side, table
from common.report_stage import ReportStage
from papers.time_shift.method import sample_variance


def main(argv=None):
    st = ReportStage.load(argv)
    res, fid, cp, sw, n0 = st.results, st.results["metric"], st.cfg.compare, st.cfg.sweep, min(st.cfg.compare.nfe)
    paper, tuned = (f"w={res[p + 'window']} c={res[p + 'cutoff']}" for p in ("paper_", ""))
    arms = {("baseline", "paper"): ("", ":", "baseline"), ("method", "paper"): ("TS-", "-", f"TS {paper}"),
            ("method", "tuned"): ("TS(tuned)-", "--", f"TS tuned {tuned}")}  # legend prefix, line, table label

    st.curves("fid_vs_nfe", "nfe", cp.nfe, fid, {f"{pre}{s.upper()}": dict(sampler=s, arm=a, group=g, ls=ls)
                                                 for s in cp.samplers for (a, g), (pre, ls, _) in arms.items()},
              nfe=True, stage="compare")  # 95% intervals over sampling seeds
    with st.figure("shifts", figsize=(5.2, 3.5)) as ax:
        for key, steps in res["shifts"].items():
            ax.plot([s["nominal"] for s in steps], [s["mean"] - s["nominal"] for s in steps], marker="o", label=key)
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel="nominal next timestep t'", ylabel="mean shift t_s - t'",
               title=f"tuned: {tuned}; paper: {paper}".replace(" c=", ", c="))
        ax.legend(fontsize=7)
    side_by_side(*(st.out / "samples" / f"ddim_nfe{n0}_{g}.png" for g in ("baseline", "paper")),
                 st.figures / f"samples_ddim_nfe{n0}.png",
                 [f"DDIM, {n0} steps", f"TS-DDIM ({paper.replace(' ', ', ')}), {n0} steps"])

    x_train, _ = load_split(resolve(st.cfg, st.cfg.paths.data, "prepared"), "train")
    v0 = float(sample_variance(to_model_range(x_train).double()).mean())  # the images' own pixel variance
    keys, grid = [k for k in st.rows[0] if "[" in k] + ["seconds"], [(s, n) for s in cp.samplers for n in cp.nfe]
    compare = st.ci_table(["sampler", "NFE", "arm", *keys], [
        ((s, n, label), dict(stage="compare", sampler=s, nfe=n, arm=a, group=g))
        for s, n in grid for (a, g), (*_, label) in arms.items()], keys)
    overhead = st.ci_table(["sampler", "NFE", "TS setting", "overhead"], [
        ((s, n, g), dict(stage="overhead", sampler=s, nfe=n, group=g)) for s, n in grid for g in ("paper", "tuned")],
        ["overhead"])
    sweep = table(["window \\ cutoff", *map(str, sw.cutoff)],
                  [[w, *(res["sweep_mean_fid"][f"{w},{c}"] for c in sw.cutoff)] for w in sw.window])
    st.publish(metrics={"window": res["window"], "cutoff": res["cutoff"], "data_pixel_variance": v0}, fid=fid, cp=cp,
               sw=sw, n0=n0, v0=v0, compare_table=compare, sweep_table=sweep, overhead_table=overhead)


if __name__ == "__main__":
    run_main(main)
