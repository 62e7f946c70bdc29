"""Stage `report`: claims -> verdicts, figures and reports/diffusion2gan/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import per_unit, select, table
from common.report_stage import ReportStage, errorbar_curve

NAMES = {"mse": "MSE", "lpips": "LPIPS (pixels)", "latent_lpips": "LatentLPIPS", "e_latent_lpips": "E-LatentLPIPS",
         "gan": "E-LatentLPIPS + GAN", "teacher": "teacher (DDIM)"}


def fid_vs_step(st, fid, steps, teacher_fid):
    """FID of the students vs training step, mean and 95% interval over training seeds; the teacher as a line."""
    with st.figure("fid_vs_step", figsize=(5.8, 3.8)) as ax:
        for i, arm in enumerate(st.cfg.arms):
            errorbar_curve(ax, st.rows, "step", steps, fid, "train_seed", NAMES[arm], comparison="students", arm=arm,
                           color=f"C{i}")
        ax.axhline(teacher_fid, color="k", ls="--", lw=1, label=f"teacher, {st.results['teacher_nfe']} steps")
        ax.set(xlabel="training step", ylabel=f"{fid}, 1 step", yscale="log",
               title=f"one-step students, mean and 95% CI over seeds {list(st.cfg.train_seeds)}")


def overfit_curves(st, rows, variants):
    """Latent MSE and decoded PSNR of the fitted latent vs Adam step, per distance (mean over init seeds)."""
    steps = sorted({r["step"] for r in rows})
    with st.figure("overfit_curves", figsize=(10, 3.6), ncols=3) as axes:
        for i, v in enumerate(variants):
            label = "LatentLPIPS" if v == "latent_lpips" else f"E-LatentLPIPS ({v})"
            for ax, metric in zip(axes, ("latent_lpips", "latent_mse", "psnr")):
                errorbar_curve(ax, rows, "step", steps, metric, "seed", label, comparison="overfit_curve", arm=v,
                               color=f"C{i}", marker=None)
        for ax, metric in zip(axes, ("plain LatentLPIPS to target", "latent MSE to target", "PSNR of decoded fit (dB)")):
            ax.set(xlabel="Adam step", ylabel=metric)
        axes[0].set_yscale("log")
        axes[1].set_yscale("log")


def overfit_images(st, arrays, variants):
    """Targets (top row) and each distance's decoded fit after the last step (first init seed)."""
    rows = [("targets", arrays["targets"])] + [(v, arrays[v]) for v in variants]
    with st.figure("overfit_images", figsize=(1.1 * len(rows), 1.1 * len(arrays["targets"]) + 0.4),
                   nrows=len(arrays["targets"]), ncols=len(rows), squeeze=False) as axes:
        for j, (name, imgs) in enumerate(rows):
            for i in range(len(imgs)):
                axes[i, j].imshow((imgs[i, 0] + 1) / 2, cmap="gray", vmin=0, vmax=1)
                axes[i, j].axis("off")
            axes[0, j].set_title("LatentLPIPS" if name == "latent_lpips" else name, fontsize=8)


def samples_figure(st, arms):
    """The teacher's DDIM samples and each student's one-step samples for the same noise and labels."""
    from PIL import Image

    names = ["teacher", *arms]
    with st.figure("samples_same_noise", figsize=(2.3 * len(names), 2.6), ncols=len(names)) as axes:
        for ax, name in zip(axes, names):
            ax.imshow(np.asarray(Image.open(st.out / "samples" / f"{name}.png")), cmap="gray")
            ax.set_title(NAMES[name], fontsize=8)
            ax.axis("off")


def loss_figure(st, trained):
    with st.figure("loss", figsize=(5.6, 3.6)) as ax:
        first = trained["runs"][0]["train_seed"]
        for i, arm in enumerate(st.cfg.arms):
            for r in (r for r in trained["runs"] if r["arm"] == arm):
                ax.plot([e["step"] for e in r["history"]], [e["loss"] for e in r["history"]], color=f"C{i}",
                        alpha=0.6, label=NAMES[arm] if r["train_seed"] == first else "_")
        ax.set(xlabel="training step", ylabel="training loss (own scale per arm)", yscale="log")


def main(argv=None):
    st = ReportStage.load(argv, also=("overfit.json", "benchmark.json"))
    cfg, fid = st.cfg, st.results["metric"]
    trained, ov, bench = st.read("train.json"), st.read("overfit.json"), st.read("benchmark.json")
    acc = fid.replace("fid", "class_acc")
    steps = sorted({r["step"] for r in select(st.rows, comparison="students")})
    teacher = select(st.rows, comparison="teacher")[0]
    fid_vs_step(st, fid, steps, teacher[fid])
    variants = ov["variants"]
    overfit_curves(st, ov["rows"], variants)
    arrays = np.load(st.out / "overfit_images.npz")
    st.artifacts.append(st.out / "overfit_images.npz")
    overfit_images(st, arrays, variants)
    samples_figure(st, cfg.arms)
    loss_figure(st, trained)
    last = cfg.train.steps
    metrics = [fid, acc, "mse_to_teacher", "psnr_to_teacher"]
    students = st.ci_table(["student (1 step)", *metrics], [(NAMES[a], dict(comparison="students", arm=a, step=last))
                                                           for a in cfg.arms], metrics, "train_seed")
    teacher_table = table(["model", "NFE", fid, acc], [[NAMES["teacher"], teacher["nfe"], teacher[fid], teacher[acc]]])
    spread = table(["student", *(f"seed {s}" for s in cfg.train_seeds)], [
        [NAMES[a], *(f"{v:.2f}" for v in per_unit(st.rows, fid, "train_seed", comparison="students", arm=a, step=last))]
        for a in cfg.arms])
    ov_last = max(r["step"] for r in ov["rows"])
    ov_metrics = ["latent_lpips", "latent_mse", "psnr"]
    overfit_table = st.ci_table(["distance", *ov_metrics], [
        ("LatentLPIPS" if v == "latent_lpips" else f"E-LatentLPIPS ({v})",
         dict(comparison="overfit_curve", arm=v, step=ov_last)) for v in variants], ov_metrics, "seed", rows=ov["rows"])
    lm, sm = bench["loss_median_seconds"], bench["sampling_median_seconds"]
    bench_table = table(["contender", "median ms per call", "vs decode + LPIPS / teacher"], [
        [f"E-LatentLPIPS step ({bench['distance_names']['elat']})", lm["e_latent_lpips"] * 1e3,
         f"{bench['loss_speedup']:.2f}x cheaper"],
        ["plain LatentLPIPS step", lm["latent_lpips"] * 1e3, f"{bench['loss_speedup_plain']:.2f}x cheaper"],
        [f"decode + pixel LPIPS step ({bench['distance_names']['pixel']})", lm["decode_lpips"] * 1e3, "1x"],
        [f"teacher DDIM, {bench['teacher_nfe']} calls", sm["teacher"] * 1e3, "1x"],
        ["student, 1 call", sm["student"] * 1e3, f"{bench['sampling_speedup']:.1f}x faster"]])
    runs = table(["arm", "seed", "steps", "wall time", "final loss"], [
        [NAMES[r["arm"]], r["train_seed"], r["steps"], f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}"]
        for r in trained["runs"]])
    mean = {a: float(np.mean(per_unit(st.rows, fid, "train_seed", comparison="students", arm=a, step=last)))
            for a in cfg.arms}
    st.publish(metrics={"loss_speedup": bench["loss_speedup"], "sampling_speedup": bench["sampling_speedup"],
                        "train_seconds": trained["train_seconds"], "teacher_fid": teacher[fid],
                        **{f"fid_{a}": v for a, v in mean.items()}},
               fid=fid, acc=acc, trained=trained, ov=ov, bench=bench, students_table=students,
               teacher_table=teacher_table, spread_table=spread, overfit_table=overfit_table, bench_table=bench_table,
               runs_table=runs, mean=mean, teacher=teacher, ov_last=ov_last, names=NAMES)


if __name__ == "__main__":
    run_main(main)
