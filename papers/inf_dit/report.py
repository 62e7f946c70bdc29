"""Stage `report`: claims -> verdicts, plots and reports/inf_dit/README.md (prose: report.md), logged to MLflow."""

import numpy as np
from matplotlib.ticker import NullFormatter

from common.claims import COUNTED
from common.cli import run_main
from common.report import select, side_by_side, table
from common.report_stage import ReportStage

MODES = {"full": ("'full' (one pass)", "C0"), "ar": ("'ar' (block by block)", "C1")}
SETS = {"infdit": "Inf-DiT", "patches": "independent patches", "bicubic": "bicubic up(LR)", "hr": "HR (ground truth)"}


def memory_figure(st, rows, fixed_px: int):
    """Peak working memory of one network call vs width (height fixed) and vs height (width fixed), per mode."""
    with st.figure("memory", figsize=(9.0, 3.6), ncols=2) as axes:
        for ax, axis, other in ((axes[0], "width", "height"), (axes[1], "height", "width")):
            for mode, (label, color) in MODES.items():
                pts = sorted({(r["side"], r["pixels"], r["peak_mb"]) for r in rows if r["axis"] == axis and r["mode"] == mode})
                px = [int(p.split("x")[1 if axis == "width" else 0]) for _, p, _ in pts]
                ax.plot(px, [m for *_, m in pts], "o-", color=color, label=label)
            ax.set(xlabel=f"image {axis} (px), {other} {fixed_px} px", ylabel="peak working memory (MB)", xscale="log",
                   yscale="log", title=f"vs {axis}")
            ax.set_xticks(px, [str(p) for p in px])
            ax.xaxis.set_minor_formatter(NullFormatter())


def loss_figure(st, runs, smooth: int = 20):
    with st.figure("loss", figsize=(5.6, 3.6)) as ax:
        for k, r in enumerate(runs):
            steps = np.array([h["step"] for h in r["history"]])
            loss = np.array([h["loss"] for h in r["history"]], dtype=float)
            ax.plot(steps, loss, color=f"C{k}", alpha=0.2, lw=0.6)
            if len(loss) >= smooth:
                ax.plot(steps[smooth - 1:], np.convolve(loss, np.ones(smooth) / smooth, "valid"), color=f"C{k}",
                        label=f"seed {r['train_seed']}")
        ax.set(xlabel="step", ylabel="EDM loss", yscale="log", title="training loss (moving average)")


def main(argv=None):
    st = ReportStage.load(argv, also=("benchmark.json",))
    cfg, res = st.cfg, st.results
    trained, bench = st.read("train.json"), st.read("benchmark.json")
    acc = res["metric"]
    mem = [r for r in bench["rows"] if r["comparison"] == "memory" and r["repeat"] == 0]
    memory_figure(st, mem, cfg.benchmark.fixed * cfg.canvas.size)
    loss_figure(st, trained["runs"])
    s = st.out / "samples"
    side_by_side(s / "seams.png", s / "seam_maps.png", st.figures / "seams.png",
                 ["rows: independent patches, Inf-DiT, HR", "gradient magnitude (same rows)"])
    growth = {(r["mode"], r["axis"]): r["growth"] for r in bench["rows"] if r["comparison"] == "memory_growth" and r["repeat"] == 0}
    memory_table = table(["swept axis", "size (px)", "tokens", "W blocks", "'full' peak MB", "'ar' peak MB", "'full' s", "'ar' s"], [
        [r["axis"], r["pixels"], r["tokens"], r["width_blocks"], f"{r['peak_mb']:.3f}", f"{a['peak_mb']:.3f}",
         f"{r['seconds']:.3f}", f"{a['seconds']:.3f}"]
        for r in mem if r["mode"] == "full" for a in mem if a["mode"] == "ar" and a["axis"] == r["axis"] and a["side"] == r["side"]])
    sizes = st.ci_table(["size", "pixels", "set", "PSNR (dB)", "SSIM", "seam ratio"], [
        ((z, select(st.rows, comparison="sizes", size=z)[0]["pixels"], SETS[k]), dict(comparison="sizes", size=z, set=k))
        for z in res["sizes"] for k in ("infdit", "bicubic")], ["psnr", "ssim", "seam_ratio"], "train_seed")
    seams = st.ci_table(["set", "seam ratio", "PSNR (dB)", "SSIM", acc], [
        (SETS[k], dict(comparison="seams", set=k)) for k in ("infdit", "patches")], ["seam_ratio", "psnr", "ssim", acc], "train_seed")
    accuracy = st.ci_table(["set", acc], [(SETS[k], dict(comparison="accuracy", set=k)) for k in ("infdit", "bicubic", "hr")],
                           [acc], "train_seed")
    eq = select(st.rows, comparison="equivalence")
    eq_table = table(["training seed", "max abs diff full vs ar", "cached blocks (max, one layer)", "W blocks"],
                     [[r["train_seed"], f"{r['max_abs_diff']:.2e}", r["cached_blocks"], r["width_blocks"]] for r in eq])
    runs_table = table(["seed", "steps", "params", "final loss", "wall time"], [
        [r["train_seed"], r["steps"], f"{r['params']:,}", f"{r['final_loss']:.4f}", f"{r['seconds']:.0f} s"] for r in trained["runs"]])
    hr_seam = float(np.mean([r["seam_ratio"] for r in select(st.rows, comparison="seams", set="hr")]))

    def mean(metric, **where):
        return float(np.mean([r[metric] for r in select(st.rows, **where)]))

    at_seam = dict(comparison="sizes", size=res["seam_size"])
    numbers = {"psnr_sr": mean("psnr", set="infdit", **at_seam), "psnr_bicubic": mean("psnr", set="bicubic", **at_seam),
               "seam_sr": mean("seam_ratio", set="infdit", **at_seam), "seam_bicubic": mean("seam_ratio", set="bicubic", **at_seam),
               **{f"acc_{k}": mean(acc, comparison="accuracy", set=v) for k, v in (("sr", "infdit"), ("bicubic", "bicubic"), ("hr", "hr"))}}
    st.publish(metrics={"train_seconds": trained["train_seconds"], "bench_seconds": bench["eval_seconds"]},
               memory_table=memory_table, sizes_table=sizes, seams_table=seams, accuracy_table=accuracy,
               eq_table=eq_table, runs_table=runs_table, growth=growth, trained=trained, bench=bench, acc=acc,
               hr_seam=hr_seam, max_diff=max(r["max_abs_diff"] for r in eq), nparams=trained["runs"][0]["params"],
               n_counted=sum(v.verdict in COUNTED for v in st.verdicts), **numbers)


if __name__ == "__main__":
    run_main(main)
