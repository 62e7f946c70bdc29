"""Stage `report`: claims -> verdicts, figures (FID vs k per arm, FID vs training step per arm, student samples beside
the teacher's for the same noise) and reports/imagine_flash/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.claims import COUNTED
from common.cli import run_main
from common.report import select, table
from common.report_stage import ReportStage

ARMS = {"backward_srl": "backward + SRL (Imagine Flash)", "forward_srl": "forward + SRL",
        "backward_mse": "backward + x0-MSE to the teacher"}
GROUPS = {"backward_srl": ("loss", "method"), "forward_srl": ("direction", "baseline"),
          "backward_mse": ("loss", "baseline")}  # one comparison that holds each student's rows exactly once


def fid_vs_k(st, fid: str, teacher_fid: float, ks):
    """FID vs student steps per arm (noise correction on), 95% intervals over training seeds; the teacher's line."""
    arms = {label: {"comparison": GROUPS[a][0], "arm": GROUPS[a][1], "student": a, "nc": True} for a, label in ARMS.items()}
    ax = st.curves("fid_vs_k", "k", ks, fid, arms, unit="train_seed")
    ax.axhline(teacher_fid, color="k", ls="--", lw=0.8, label="teacher, 25 DDIM steps")
    ax.set(xlabel="student steps k", ylabel=fid, yscale="log", xticks=list(ks))
    ax.legend(fontsize=8)
    ax.figure.savefig(st.figures / "fid_vs_k.png", dpi=120)


def fid_vs_step(st, fid: str, curve_k):
    """FID vs training step per arm and k (step 0: the teacher, every student's initialisation)."""
    rows = select(st.rows, comparison="curve")
    steps = sorted({r["step"] for r in rows})
    with st.figure("fid_vs_step", figsize=(4.6 * len(curve_k), 3.6), ncols=len(curve_k), squeeze=False) as axes:
        for ax, k in zip(axes[0], curve_k):
            for c, (arm, label) in enumerate(ARMS.items()):
                per = [[r[fid] for r in rows if r["student"] == arm and r["k"] == k and r["step"] == s] for s in steps]
                m = np.array([np.mean(v) for v in per])
                sd = np.array([np.std(v) for v in per])
                ax.plot(steps, m, "o-", color=f"C{c}", label=label)
                ax.fill_between(steps, m - sd, m + sd, color=f"C{c}", alpha=0.15)
            ax.set(xlabel="training step", ylabel=fid, yscale="log", title=f"{k} student step(s), mean +- sd over seeds")


def loss_figure(st, runs):
    with st.figure("loss", figsize=(5.6, 3.6)) as ax:
        for c, arm in enumerate(ARMS):
            for r in (r for r in runs if r["arm"] == arm):
                ax.plot([h["step"] for h in r["history"]], [h["loss"] for h in r["history"]], color=f"C{c}", lw=0.8,
                        alpha=0.7, label=ARMS[arm] if r["train_seed"] == runs[0]["train_seed"] else None)
        ax.set(xlabel="step", ylabel="training loss (SRL or x0-MSE)", yscale="log")


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res = st.cfg, st.results
    trained = st.read("train.json")
    fid, ks = res["metric"], res["step_counts"]
    fid_vs_k(st, fid, res["teacher"][fid], ks)
    fid_vs_step(st, fid, cfg.eval.curve_k)
    loss_figure(st, trained["runs"])
    metrics = [fid, fid.replace("fid[", "class_acc[", 1), "mean_intensity", "contrast"]
    arms_table = st.ci_table(["student", "k", "noise corr.", *metrics], [
        ((ARMS[a], k, "yes" if nc else "no"), dict(comparison=GROUPS[a][0], arm=GROUPS[a][1], student=a, k=k, nc=nc))
        for a in ARMS for k in ks for nc in (False, True)], metrics, "train_seed")
    shift_table = st.ci_table(["k", "stat shift (rel.)", "FID shift (rel.)", "excess"], [
        ((k,), dict(comparison="nc_shift", k=k)) for k in ks], ["stat_shift", "fid_shift", "shift_excess"], "train_seed")
    runs_table = table(["student", "seed", "steps", "final loss", "wall time"], [
        [ARMS[r["arm"]], r["train_seed"], r["steps"], f"{r['final_loss']:.4f}", f"{r['seconds']:.0f} s"]
        for r in trained["runs"]])
    means = {a: {k: float(np.mean([r[fid] for r in select(st.rows, comparison=GROUPS[a][0], arm=GROUPS[a][1], student=a,
                                                           k=k, nc=True)])) for k in ks} for a in ARMS}
    init = {k: float(np.mean([r[fid] for r in select(st.rows, comparison="curve", step=0, k=k)])) for k in cfg.eval.curve_k}
    st.publish(metrics={"train_seconds": trained["train_seconds"]}, trained=trained, arms_table=arms_table,
               means=means, init=init,
               shift_table=shift_table, runs_table=runs_table, fid=fid, arms=ARMS,
               nparams=trained["runs"][0]["params"], n_counted=sum(v.verdict in COUNTED for v in st.verdicts))


if __name__ == "__main__":
    run_main(main)
