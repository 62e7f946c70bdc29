"""Stage `report`: claims -> verdicts, plots and reports/ddpm_ip/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.config import read_json, resolve
from common.report import per_unit, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve, nfe_axis
from papers.ddpm_ip.evaluate import grid

LABEL = {"baseline": "baseline (γ = 0)", "method": "DDPM-IP"}


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, rows, fid, ev, trained = st.cfg, st.rows, st.results["metric"], st.cfg.eval, st.read("train.json")
    cells, n0 = grid(ev), min(ev.nfe)
    mean = {(s, n, a): float(np.mean([r[fid] for r in st.select(sampler=s, nfe=n, arm=a)]))
            for s, n in cells for a in LABEL}

    with st.figure("fid_vs_nfe") as ax:  # 95% intervals over training seeds (sampling seeds averaged first)
        for arm, color in (("baseline", "C0"), ("method", "C1")):
            for s, xs, style in (("ddim", ev.nfe, {}), ("ddpm", ev.ddpm_nfe, dict(marker="s", ls="none", mfc="none"))):
                if s in ev.samplers:
                    errorbar_curve(ax, rows, "nfe", xs, fid, "train_seed", f"{LABEL[arm]}, {s.upper()}", arm=arm,
                                   sampler=s, color=color, **style)
        nfe_axis(ax, [*ev.nfe, *ev.ddpm_nfe], fid)
    with st.figure("loss", figsize=(5.4, 3.4)) as ax:  # the IP loss is measured on perturbed inputs: higher
        for r in trained["runs"]:
            ax.plot([e["step"] for e in r["history"]], [e["loss"] for e in r["history"]], alpha=0.8,
                    color="C0" if r["arm"] == "baseline" else "C1", label=f"{LABEL[r['arm']]}, seed {r['train_seed']}")
        ax.set(xlabel="step", ylabel="training loss", yscale="log")
    side_by_side(st.out / "samples" / f"ddim{n0}_baseline.png", st.out / "samples" / f"ddim{n0}_method.png",
                 st.figures / f"samples_ddim{n0}.png", [f"baseline, DDIM {n0} steps", f"DDPM-IP γ={cfg.gamma:g}, DDIM {n0}"])

    keys = [k for k in rows[0] if "[" in k]
    results = st.ci_table(["sampler", "NFE", "model", *keys], [
        ((s, n, LABEL[a]), dict(sampler=s, nfe=n, arm=a)) for s, n in cells for a in LABEL], keys, "train_seed")
    seeds = sorted(cfg.train_seeds, key=str)  # per_unit's order
    spread = table(["sampler", "NFE", *(f"training seed {t}" for t in seeds)], [
        [s, n, *(f"{b:.3f} → {m:.3f} ({(m - b) / b:+.1%})" for b, m in zip(*(
            per_unit(rows, fid, "train_seed", sampler=s, nfe=n, arm=a) for a in LABEL)))] for s, n in cells])
    runs = table(["arm", "γ", "seed", "steps", "wall time", "final loss"], [
        [r["arm"], r["gamma"], r["train_seed"], r["steps"], f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}"]
        for r in trained["runs"]])
    base_file = resolve(cfg, "metrics", "base_model_eval.json")  # absent when run outside DVC (unit tests)
    base = [r for r in read_json(base_file)["rows"] if r["arm"] == "method"] if base_file.is_file() else []
    st.publish(metrics={"train_seconds": trained["train_seconds"]}, fid=fid, ev=ev, trained=trained, cells=cells,
               results_table=results, spread_table=spread, runs_table=runs, n0=n0, mean=mean,
               base=base and {"fid": np.mean([r[fid] for r in base]), "step": base[0]["model_step"]},
               n_better=sum(mean[(s, n, "method")] < mean[(s, n, "baseline")] for s, n in cells))


if __name__ == "__main__":
    run_main(main)
