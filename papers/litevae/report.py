"""Stage `report`: claims -> verdicts, figures and reports/litevae/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import per_unit, table
from common.report_stage import ReportStage

NAMES = {"vae": "VAE (AutoencoderKL)", "litevae": "LiteVAE", "litevae_smc": "LiteVAE + SMC"}


def reconstructions(st, arrays, arms, seed):
    """Held-out inputs (top row) and each arm's reconstruction (one row per arm), first training seed."""
    rows = [("input", arrays["inputs"])] + [(NAMES[a], arrays[f"{a}_seed{seed}"]) for a in arms]
    n = len(arrays["inputs"])
    with st.figure("reconstructions", figsize=(1.0 * n + 1.2, 1.05 * len(rows)), nrows=len(rows), ncols=n,
                   squeeze=False) as axes:
        for i, (name, imgs) in enumerate(rows):
            for j in range(n):
                axes[i, j].imshow(imgs[j].transpose(1, 2, 0))
                axes[i, j].set_xticks([])
                axes[i, j].set_yticks([])
            axes[i, 0].set_ylabel(name, fontsize=7)


def norm_histograms(st, arrays, arms, seeds):
    """Per-channel L2 norms of the decoder blocks' outputs / their block mean, pooled over blocks and seeds."""
    with st.figure("channel_norms", figsize=(6.4, 3.6)) as ax:
        for i, a in enumerate(arms):
            v = np.concatenate([arrays[k] / arrays[k].mean() for s in seeds for k in arrays.files
                                if k.startswith(f"norms_{a}_seed{s}_")])
            ax.hist(v, bins=40, histtype="step", lw=1.5, color=f"C{i}", label=f"{NAMES[a]} (max {v.max():.2f})")
        ax.set(xlabel="per-channel L2 norm / block mean", ylabel="channels (all blocks, all seeds)", yscale="log")


def per_seed(st, arms, seeds, lpips_key):
    with st.figure("psnr_lpips_per_seed", figsize=(8.4, 3.4), ncols=2) as axes:
        for ax, metric in zip(axes, ("psnr", lpips_key)):
            for i, a in enumerate(arms):
                v = per_unit(st.rows, metric, "train_seed", comparison="recon", arm=a)
                ax.plot(np.arange(len(v)) + 0.08 * (i - 1), v, "o", color=f"C{i}", label=NAMES[a])
            ax.set(xticks=range(len(seeds)), xticklabels=[f"seed {s}" for s in seeds], ylabel=metric)


def losses(st, trained, arms):
    with st.figure("loss", figsize=(5.6, 3.6)) as ax:
        first = trained["runs"][0]["train_seed"]
        for i, a in enumerate(arms):
            for r in (r for r in trained["runs"] if r["arm"] == a):
                ax.plot([e["step"] for e in r["history"]], [e["loss"] for e in r["history"]], color=f"C{i}",
                        alpha=0.6, label=NAMES[a] if r["train_seed"] == first else "_")
        ax.set(xlabel="training step", ylabel="training loss (Eq. 5)", yscale="log")


def main(argv=None):
    st = ReportStage.load(argv, also=("benchmark.json",))
    cfg, res = st.cfg, st.results
    trained, bench = st.read("train.json"), st.read("benchmark.json")
    arrays = np.load(st.out / "reconstructions.npz")
    st.artifacts.append(st.out / "reconstructions.npz")
    arms, seeds, lp, rf = list(cfg.arms), list(cfg.train_seeds), res["lpips"], res["rfid"]
    reconstructions(st, arrays, arms, seeds[0])
    norm_histograms(st, arrays, [a for a in arms if a != "vae"] + ["vae"], seeds)
    per_seed(st, arms, seeds, lp)
    losses(st, trained, arms)
    metrics = ["psnr", "ssim", lp, rf, "norm_ratio"]
    recon_table = st.ci_table(["arm", *metrics], [(NAMES[a], dict(comparison="recon", arm=a)) for a in arms],
                              metrics, "train_seed")
    spread = table(["arm", "metric", *(f"seed {s}" for s in seeds)], [
        [NAMES[a], m, *(f"{v:.4g}" for v in per_unit(st.rows, m, "train_seed", comparison="recon", arm=a))]
        for a in arms for m in ("psnr", lp)])
    sz = bench["sizes"]
    bench_table = table(["encoder", "parameters", "GFLOPs / image", "median ms per call", "images / s"], [
        [NAMES[arm], f"{sz[role]['encoder_params']:,}", f"{sz[role]['encoder_gflops']:.4f}",
         bench["median_seconds"][role] * 1e3, cfg.benchmark.batch_size / bench["median_seconds"][role]]
        for role, arm in (("baseline", "vae"), ("method", "litevae"))])
    runs = table(["arm", "seed", "steps", "wall time", "final loss", "encoder params", "all params"], [
        [NAMES[r["arm"]], r["train_seed"], r["steps"], f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}",
         f"{r['encoder_params']:,}", f"{r['params']:,}"] for r in trained["runs"]])
    mean = {a: {m: float(np.mean(per_unit(st.rows, m, "train_seed", comparison="recon", arm=a))) for m in metrics}
            for a in arms}
    st.publish(metrics={"speedup": bench["speedup"], "param_ratio": bench["param_ratio"],
                        "flop_ratio": bench["flop_ratio"], "train_seconds": trained["train_seconds"],
                        **{f"{m.split('[')[0]}_{a}": v for a in arms for m, v in mean[a].items()}},
               lp=lp, rf=rf, trained=trained, bench=bench, recon_table=recon_table, spread_table=spread,
               bench_table=bench_table, runs_table=runs, mean=mean, names=NAMES)


if __name__ == "__main__":
    run_main(main)
