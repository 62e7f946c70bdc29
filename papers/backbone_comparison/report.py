"""Stage `report`: FID vs training FLOPs and vs training time, the equal-compute table, the benchmark ratios and the
verdicts -> reports/backbone_comparison/README.md."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, per_unit, table
from common.report_stage import ReportStage
from common.stats import mean_ci

ARMS = {"DiT": ("k", "o"), "MaskDiT": ("C1", "s"), "Flag-DiT": ("C2", "^"), "UNet": ("C0", "D")}  # color, marker
UNIT = "seed"  # a trained network


def curve(rows, arm: str, x_key: str, metric: str):
    """(x means, metric means, lower, upper errors) per budget of one backbone, intervals over training seeds."""
    budgets = sorted({r["budget"] for r in rows if r["arm"] == arm})
    xs, ms, lo, hi = [], [], [], []
    for b in budgets:
        sel = [r for r in rows if r["arm"] == arm and r["budget"] == b]
        m, low, high = mean_ci(per_unit(sel, metric, UNIT))
        xs.append(float(np.mean([r[x_key] for r in sel])))
        ms.append(m)
        lo.append(0.0 if np.isnan(low) else m - low)
        hi.append(0.0 if np.isnan(high) else high - m)
    return xs, ms, lo, hi


def ratio_cell(rounds, arm: str, key: str = "step_seconds") -> str:
    """Per-round ratio arm / DiT: mean [95% CI] over the interleaved rounds."""
    base = {r["round"]: r[key] for r in rounds if r["arm"] == "DiT"}
    return ci_cell([r[key] / base[r["round"]] for r in rounds if r["arm"] == arm])


def main(argv=None):
    st = ReportStage.load(argv, also=("pairs.json",))
    res, fid = st.results, st.results["metric"]
    bench = st.read("benchmark.json")
    train = st.read("train.json")
    rows, keys = st.rows, res["keys"]
    with st.figure("fid_vs_compute", figsize=(10, 3.8), ncols=2) as (a1, a2):
        for arm, (color, marker) in ARMS.items():
            for ax, x_key, scale in ((a1, "train_flops", 1e12), (a2, "train_seconds", 1.0)):
                xs, ms, lo, hi = curve(rows, arm, x_key, fid)
                ax.errorbar(np.array(xs) / scale, ms, yerr=[lo, hi], color=color, marker=marker, capsize=3,
                            label=arm + (" (reference, 1 model)" if arm == "UNet" else ""))
        a1.axvline(res["cost_step"] * res["step_flops"]["DiT"] / 1e12, color="grey", ls=":", lw=1)
        a1.set(xscale="log", yscale="log", xlabel="training TFLOPs", ylabel=fid,
               title="mean and 95% CI over training seeds")
        a2.set(xscale="log", yscale="log", xlabel="training seconds (steps x benchmarked step time)", ylabel=fid)
        a1.legend(fontsize=8)
    eq = res["cost_step"]
    at_budget = lambda arm: [r for r in rows if r["arm"] == arm and r["budget"] == eq]  # noqa: E731
    train_time = {arm: float(np.mean([r["train_seconds"] for r in at_budget(arm)])) for arm in ("DiT", "MaskDiT", "Flag-DiT")}
    equal_table = table(["backbone", "training steps", "training seconds", *keys], [
        [arm, ", ".join(sorted({str(r["train_steps"]) for r in at_budget(arm)})), f"{train_time[arm]:.0f}",
         *(ci_cell(per_unit(at_budget(arm), k, UNIT)) for k in keys)] for arm in ("DiT", "MaskDiT", "Flag-DiT")])
    curve_table = table(["backbone", "budget (DiT steps)", "TFLOPs", fid, "seeds"], [
        [r_arm, f"{b:,.0f}", f"{b * res['step_flops']['DiT'] / 1e12:.2f}",
         ci_cell(per_unit([r for r in rows if r["arm"] == r_arm and r["budget"] == b], fid, UNIT)),
         len([r for r in rows if r["arm"] == r_arm and r["budget"] == b])]
        for r_arm in ARMS for b in sorted({r["budget"] for r in rows if r["arm"] == r_arm})])
    per, rounds = bench["networks"], bench["rows"]
    bench_table = table(["backbone", "parameters", "batch", "GFLOPs per step", "median ms per step",
                         "step time / DiT (rounds)", "memory MB", "memory / DiT"], [
        [k, f"{v['params']:,}", v["batch_size"], f"{res['step_flops'][k] / 1e9:.2f}",
         f"{v['median_step_seconds'] * 1e3:.1f}", ratio_cell(rounds, k) if k != "DiT" else "1",
         f"{v['memory_mb']:.1f}", f"{v['memory_mb'] / per['DiT']['memory_mb']:.2f}"] for k, v in per.items()])
    mean_fid = {arm: float(np.mean(per_unit(at_budget(arm), fid, UNIT))) for arm in ("DiT", "MaskDiT", "Flag-DiT")}
    st.publish(metrics={f"fid.{a}": v for a, v in mean_fid.items()},
               fid=fid, equal_table=equal_table, curve_table=curve_table, bench_table=bench_table, bench=bench,
               train=train, mean_fid=mean_fid, train_time=train_time, n_units=len(per_unit(at_budget("DiT"), fid, UNIT)),
               cfg_flag_width=train["flag_width"])


if __name__ == "__main__":
    run_main(main)
