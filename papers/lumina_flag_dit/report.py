"""Stage `report`: claims -> verdicts, plots and reports/lumina_flag_dit/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.claims import COUNTED
from common.cli import run_main
from common.report import side_by_side, table
from common.report_stage import ReportStage, errorbar_curve

RUNS = {"flag": ("Flag-DiT", "C1"), "absolute": ("absolute-position DiT", "C0"),
        "qknorm": ("QK-norm", "C1"), "no_qknorm": ("no QK-norm", "C0")}
SETS = {"plain": "Flag-DiT, plain RoPE", "ntk": "Flag-DiT, NTK RoPE", "prop": "Flag-DiT, proportional attention",
        "ntk+prop": "Flag-DiT, NTK + proportional", "absolute": "absolute-position DiT"}


def loss_figure(st, name, runs, smooth: int, title: str):
    """Training loss per step (moving average of `smooth` steps, raw steps light) of each run, one colour per arm."""
    with st.figure(name, figsize=(5.6, 3.6)) as ax:
        for r in runs:
            label, color = RUNS[r["row"]["run"]]
            steps = np.array([h["step"] for h in r["history"]])
            loss = np.array([h["loss"] for h in r["history"]], dtype=float)
            ax.plot(steps, loss, color=color, alpha=0.15, lw=0.6)
            if len(loss) >= smooth:
                ax.plot(steps[smooth - 1:], np.convolve(loss, np.ones(smooth) / smooth, "valid"), color=color, lw=1.2,
                        label=f"{label}, seed {r['row']['train_seed']}")
        ax.set(xlabel="step", ylabel="training loss (flow matching)", yscale="log", title=title)


def gate_figure(st, runs):
    """Mean |tanh g| over blocks and heads vs step (every training seed), and per block for the first seed."""
    with st.figure("gates", figsize=(8.4, 3.4), ncols=2) as (a, b):
        for r in runs:
            a.plot([g["step"] for g in r["gates"]], [g["mean"] for g in r["gates"]], label=f"seed {r['row']['train_seed']}")
        a.set(xlabel="step", ylabel="mean |tanh g|", title="cross-attention gates (Flag-DiT)")
        first = runs[0]["gates"]
        for k in range(len(first[0]["per_block"])):
            b.plot([g["step"] for g in first], [g["per_block"][k] for g in first], label=f"block {k}")
        b.set(xlabel="step", ylabel="mean |tanh g| of the block", title=f"per block, seed {runs[0]['row']['train_seed']}")


def accuracy_figure(st, sizes, scalings, acc, crop, pixels):
    with st.figure("accuracy_vs_size", figsize=(9.0, 3.6), ncols=2) as axes:
        x = list(range(len(sizes)))
        for ax, metric, title in ((axes[0], acc, "resized to the training size"), (axes[1], crop, "per training-size crop")):
            for i, name in enumerate([*scalings, "absolute"]):
                where = {"model": "absolute"} if name == "absolute" else {"model": "flag", "scaling": name}
                xs = [k for k, s in enumerate(sizes) if st.select(comparison="extrapolation", size=s, **where)]
                rows = [dict(r, pos=sizes.index(r["size"])) for r in st.select(comparison="extrapolation", **where)]
                errorbar_curve(ax, rows, "pos", xs, metric, "train_seed", SETS[name], color=f"C{i}")
            real = [np.mean([r[metric] for r in st.select(comparison="real", size=s)]) for s in sizes]
            ax.plot(x, real, "k--", lw=1, label="real digits (enlarged)")
            ax.set(xticks=x, xticklabels=[f"{s} ({pixels[s]})" for s in sizes], xlabel="size (x training)",
                   ylabel=metric, title=title, ylim=(0, 1.02))
            ax.axhline(0.1, color="grey", lw=0.6, ls=":")


def stability_summary(runs, st) -> dict:
    """Per arm: diverged runs, spikes, mean final loss and max logit, and the largest loss before spikes are counted
    (warm-up + window: a transient there is outside the declared definition but shown in the prose)."""
    rows = [r["row"] for r in runs]
    early = [max(h["loss"] for h in r["history"][: st.warmup_steps + st.spike_window]) for r in runs if r["history"]]
    return {"n": len(rows), "diverged": sum(r["diverged"] for r in rows), "spikes": sum(r["spikes"] for r in rows),
            "final": float(np.mean([r["final_loss"] for r in rows])) if rows else float("nan"),
            "logit": float(np.mean([r["max_logit"] for r in rows])) if rows else float("nan"),
            "early_max": float(max(early)) if early else float("nan"),
            "first": float(np.mean([r["first_loss"] for r in rows])) if rows else float("nan")}


def main(argv=None):
    st = ReportStage.load(argv, also=("train.json",))
    cfg, ev, trained = st.cfg, st.cfg.eval, st.read("train.json")
    acc, fid, crop = st.results["metric"], f"fid[{st.results['backbone']}]", f"crop_acc[{st.results['backbone']}]"
    sizes = st.results["sizes"]
    pixels = {r["size"]: r["pixels"] for r in st.select(comparison="real")}
    runs = trained["runs"]
    loss_figure(st, "loss_main", [r for r in runs if r["row"]["comparison"] == "main"], 20, f"main runs, lr {cfg.train.lr:g}")
    loss_figure(st, "loss_high_lr", [r for r in runs if r["row"]["comparison"] == "stability"], 10,
                f"high lr {cfg.stability.lr:g}")
    gate_figure(st, [r for r in runs if r["row"]["run"] == "flag"])
    accuracy_figure(st, sizes, ev.scalings, acc, crop, pixels)
    s = st.out / "samples"
    for size in sizes[1:]:
        side_by_side(s / f"flag_{size}_plain.png", s / f"flag_{size}_{ev.scalings[-1]}.png", st.figures / f"samples_{size}.png",
                     [f"Flag-DiT, plain RoPE, {size}", f"Flag-DiT, {ev.scalings[-1]}, {size}"])
        side_by_side(s / f"absolute_{size}.png", s / f"flag_{size}_{ev.scalings[-1]}.png",
                     st.figures / f"samples_{size}_vs_absolute.png", [f"absolute-position DiT, {size}", f"Flag-DiT, {ev.scalings[-1]}, {size}"])
    if ev.high_lr_samples and (s / "high_lr_qknorm.png").is_file() and (s / "high_lr_no_qknorm.png").is_file():
        side_by_side(s / "high_lr_no_qknorm.png", s / "high_lr_qknorm.png", st.figures / "samples_high_lr.png",
                     [f"no QK-norm, lr {cfg.stability.lr:g}", f"QK-norm, lr {cfg.stability.lr:g}"])

    sets = [(size, name) for size in sizes for name in ([*ev.scalings, "absolute"] if size != sizes[0] else ["plain", "absolute"])]
    extrapolation = st.ci_table(["size", "sample set", acc, crop, fid], [
        ((size, SETS[n]), dict(comparison="extrapolation", size=size, **({"model": "absolute"} if n == "absolute" else
                                                                         {"model": "flag", "scaling": n})))
        for size, n in sets], [acc, crop, fid], "train_seed")
    real = table(["size", "pixels", acc, crop, fid], [[r["size"], r["pixels"], f"{r[acc]:.3f}", f"{r[crop]:.3f}", f"{r[fid]:.2f}"]
                                                     for r in st.select(comparison="real")])
    keys = ["final_loss", "spikes", "diverged", "max_logit"]
    stability = st.ci_table(["arm", *keys], [(RUNS[n][0], dict(comparison="stability", run=n)) for n in ("qknorm", "no_qknorm")],
                            keys, "train_seed", rows=trained["rows"])
    main_keys = ["final_loss", "spikes", "diverged", "gate_abs_mean", "max_logit"]
    main_runs = st.ci_table(["arm", *main_keys], [(RUNS[n][0], dict(comparison="main", run=n)) for n in ("flag", "absolute")],
                            main_keys, "train_seed", rows=trained["rows"])
    high_lr = (st.ci_table(["arm", acc, fid], [(RUNS[n][0], dict(comparison="high_lr", run=n)) for n in ("qknorm", "no_qknorm")
                                              if st.select(comparison="high_lr", run=n)], [acc, fid], "train_seed")
               if st.select(comparison="high_lr") else "")
    per_run = table(["run", "seed", "lr", "steps", "params", "wall time", "final loss", "spikes", "diverged", "max logit"], [
        [r["run"], r["train_seed"], f"{r['lr']:g}", r["steps"], f"{r['params']:,}", f"{r['seconds']:.0f} s",
         f"{r['final_loss']:.4f}", r["spikes"], r["diverged"], f"{r['max_logit']:.3g}"] for r in trained["rows"]])
    stab = {n: stability_summary([r for r in runs if r["row"]["run"] == n], cfg.stability) for n in RUNS}
    mean = {(s, n): float(np.mean([r[acc] for r in st.select(comparison="extrapolation", size=s, **(
        {"model": "absolute"} if n == "absolute" else {"model": "flag", "scaling": n}))])) for s, n in sets}
    st.publish(metrics={"train_seconds": trained["train_seconds"]}, acc=acc, fid=fid, crop=crop, ev=ev, sizes=sizes,
               trained=trained, stab=stab, n_counted=sum(v.verdict in COUNTED for v in st.verdicts), extrapolation_table=extrapolation, real_table=real, stability_table=stability,
               main_table=main_runs, high_lr_table=high_lr, runs_table=per_run, mean=mean, last=ev.scalings[-1], pixels=pixels,
               nparams={r["run"]: r["params"] for r in trained["rows"]})


if __name__ == "__main__":
    run_main(main)
