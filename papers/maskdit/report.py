"""Stage `report`: claims -> verdicts, plots and reports/maskdit/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.config import read_json, resolve
from common.report import per_unit, select, side_by_side, table
from common.report_stage import ReportStage

NAMES = {"dit": "DiT", "maskdit": "MaskDiT r=0.5", "maskdit_r0": "MaskDiT r=0"}
COMPARISONS = {"equal_cost": ("DiT", "MaskDiT (tuned)"), "mae": ("MaskDiT without MAE (ablation step)",
                                                                  "MaskDiT (ablation step)"),
               "unmask": ("MaskDiT before tuning", "MaskDiT after tuning")}
PHASE = {("mae", "masked"): ("C1", "MaskDiT"), ("mae", "tuned"): ("C2", "MaskDiT, unmask tuning"),
         ("nomae", "ablation"): ("C3", "MaskDiT without MAE")}


def cost_figure(st, fid, trained, seeds):
    """FID without guidance vs training cost (TFLOPs): DiT snapshots (mean and 95% interval over training seeds),
    MaskDiT before/after unmask tuning and without MAE (same intervals)."""
    from common.stats import mean_ci

    f = trained["flops_per_step"]
    rows = select(st.rows, guidance=1.0)
    steps = sorted({r["dit_step"] for r in select(rows, comparison="cost_curve")})
    pts = {"DiT": [(s * f["dit"], per_unit(rows, fid, "train_seed", comparison="cost_curve", dit_step=s))
                   for s in steps]}
    masked, abl = trained["masked_steps"] * f["masked"], trained["ablation_steps"] * f["masked"]
    for label, cost, where in (("MaskDiT before tuning", masked, dict(comparison="unmask", arm="baseline")),
                               ("MaskDiT (tuned)", trained["cost_flops"], dict(comparison="unmask", arm="method")),
                               ("MaskDiT, ablation step", abl, dict(comparison="mae", arm="method")),
                               ("MaskDiT without MAE", abl, dict(comparison="mae", arm="baseline"))):
        pts[label] = [(cost, per_unit(rows, fid, "train_seed", **where))]
    with st.figure("fid_vs_cost", figsize=(5.6, 3.8)) as ax:
        for (label, p), marker in zip(pts.items(), ("o", "s", "D", "v", "^")):
            xs = np.array([c for c, _ in p]) / 1e12
            m, lo, hi = (np.array(v) for v in zip(*(mean_ci(u) for _, u in p)))
            ax.errorbar(xs, m, yerr=[m - lo, hi - m], marker=marker, capsize=3, label=label,
                        ls="-" if len(xs) > 1 else "none")
        ax.axvline(trained["cost_flops"] / 1e12, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="training cost (TFLOPs, forward + backward)", ylabel=f"{fid}, no guidance",
               title=f"mean and 95% interval over training seeds {list(seeds)}")


def speed_figure(st, bench):
    """Step time per interleaved round and activation memory, per network."""
    nets = bench["networks"]
    with st.figure("step_time_memory", figsize=(9, 3.4), ncols=2) as (a1, a2):
        for i, k in enumerate(nets):
            t = [r["step_seconds"] * 1e3 for r in bench["rows"] if r.get("network") == k and r["comparison"] == "speed"]
            a1.bar(i, np.median(t), color=f"C{i}", alpha=0.6)
            a1.plot([i] * len(t), t, "k.", ms=4)
            a2.bar(i, nets[k]["memory_bytes"] / 2**20, color=f"C{i}", alpha=0.6)
        for a, lab in ((a1, "ms per training step (median; dots: rounds)"), (a2, f"MB, {bench['memory_kind']}")):
            a.set_xticks(range(len(nets)), [NAMES[k] for k in nets])
            a.set_ylabel(lab)


def loss_figure(st, trained, dit_runs):
    """Training loss vs cost: the DiT's EDM loss and MaskDiT's L_DSM + lambda L_MAE (visible patches)."""
    f = trained["flops_per_step"]
    with st.figure("loss", figsize=(5.6, 3.6)) as ax:
        for r in dit_runs:
            ax.plot([e["step"] * f["dit"] / 1e12 for e in r["history"]], [e["loss"] for e in r["history"]], color="C0",
                    alpha=0.6, label="DiT" if r is dit_runs[0] else "_")
        first = trained["runs"][0]["train_seed"]
        for r in trained["runs"]:
            if (r["arm"], r["phase"]) not in PHASE:
                continue  # the MAE arm's ablation snapshot: part of its masked run
            per = f["unmasked"] if r["tuned"] else f["masked"]
            x0 = trained["masked_steps"] * f["masked"] if r["tuned"] else 0.0
            color, label = PHASE[(r["arm"], r["phase"])]
            ax.plot([(x0 + e["step"] * per) / 1e12 for e in r["history"]], [e["loss"] for e in r["history"]],
                    color=color, alpha=0.6, label=label if r["train_seed"] == first else "_")
        ax.set(xlabel="training cost (TFLOPs)", ylabel="training loss", yscale="log")


def main(argv=None):
    st = ReportStage.load(argv, also=("benchmark.json",))
    cfg, fid, ev = st.cfg, st.results["metric"], st.cfg.eval
    trained, bench = st.read("train.json"), st.read("benchmark.json")
    dit_file = resolve(cfg, "metrics", "dit_train.json")
    dit_runs = read_json(dit_file, "train_dit")["runs"]
    cost_figure(st, fid, trained, cfg.dit.train_seeds)
    speed_figure(st, bench)
    loss_figure(st, trained, dit_runs)
    w0 = f"{ev.guidance_scales[0]:g}"
    side_by_side(st.out / "samples" / f"dit_w{w0}.png", st.out / "samples" / f"maskdit_w{w0}.png",
                 st.figures / "samples_equal_cost.png", [f"DiT, {cfg.cost_step} steps", "MaskDiT, same FLOPs, tuned"])
    keys = [k for k in st.rows[0] if "[" in k]
    groups = [((c, w, COMPARISONS[c][a == "method"]), dict(comparison=c, guidance=w, arm=a))
              for c in COMPARISONS for w in ev.guidance_scales for a in ("baseline", "method")
              if select(st.rows, comparison=c, guidance=w)]
    results = st.ci_table(["comparison", "guidance", "model", *keys], groups, keys, "train_seed")
    spread = table(["comparison", "guidance", *(f"training seed {s}" for s in sorted(cfg.dit.train_seeds, key=str))], [
        [c, w, *(f"{b:.2f} → {m:.2f} ({(m - b) / b:+.0%})" for b, m in zip(*(
            per_unit(st.rows, fid, "train_seed", comparison=c, guidance=w, arm=a) for a in ("baseline", "method"))))]
        for (c, w, _), where in groups[::2]])
    nets = bench["networks"]
    bench_table = table(["network", "parameters", "GFLOPs per step", "median ms per step", "memory MB"], [
        [NAMES[k], f"{v['params']:,}", f"{v['step_flops'] / 1e9:.2f}", f"{v['median_step_seconds'] * 1e3:.1f}",
         f"{v['memory_bytes'] / 2**20:.1f}"] for k, v in nets.items()])
    runs = table(["model", "seed", "steps", "training TFLOPs", "wall time", "final loss"], [
        *[["DiT (train_dit)", r["train_seed"], r["steps"], f"{r['steps'] * trained['flops_per_step']['dit'] / 1e12:.2f}",
           f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}"] for r in dit_runs],
        *[[f"MaskDiT {r['arm']} ({r['phase']})", r["train_seed"], r["steps"],
           f"{r['train_flops'] / 1e12:.2f}", f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}"] for r in trained["runs"]
          if (r["arm"], r["phase"]) in PHASE]])  # the MAE arm's ablation snapshot is part of its masked run
    mean = {(c, w, a): float(np.mean(per_unit(st.rows, fid, "train_seed", comparison=c, guidance=w, arm=a)))
            for (c, w, _), where in groups for a in ("baseline", "method")}
    st.publish(metrics={"speed_ratio": bench["speed_ratio"], "flops_ratio": bench["flops_ratio"],
                        "masked_steps": trained["masked_steps"], "train_seconds": trained["train_seconds"]},
               fid=fid, ev=ev, trained=trained, bench=bench, nets=nets, results_table=results, spread_table=spread,
               bench_table=bench_table, runs_table=runs, mean=mean, dit_seconds=sum(r["seconds"] for r in dit_runs))


if __name__ == "__main__":
    run_main(main)
