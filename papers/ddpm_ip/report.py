"""Stage `report`: claims -> verdicts, plots and reports/ddpm_ip/README.md (prose: report.md), logged to MLflow."""

import json

import numpy as np

from common.config import resolve, to_dict
from common.publish import sampling_protocol
from common.report import ci_cell, per_unit, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve
from papers.ddpm_ip.config import DdpmIpConfig
from papers.ddpm_ip.evaluate import grid
from papers.ddpm_ip.train import PAPER

LABEL = {"baseline": "baseline (γ = 0)", "method": "DDPM-IP"}


def main(argv=None):
    st = ReportStage.load(DdpmIpConfig, PAPER, argv)
    cfg, res, rows, fid, ev = st.cfg, st.results, st.rows, st.results["metric"], st.cfg.eval
    trained = st.read("train.json")
    mean = {(s, n, a): float(np.mean([r[fid] for r in st.select(sampler=s, nfe=n, arm=a)]))
            for s, n in grid(ev) for a in LABEL}

    with st.figure("fid_vs_nfe") as ax:  # 95% intervals over training seeds (sampling seeds averaged first)
        for arm, color in (("baseline", "C0"), ("method", "C1")):
            errorbar_curve(ax, rows, "nfe", ev.nfe, fid, "train_seed", f"{LABEL[arm]}, DDIM", arm=arm,
                           sampler="ddim", color=color)
            if "ddpm" in ev.samplers:
                errorbar_curve(ax, rows, "nfe", ev.ddpm_nfe, fid, "train_seed", f"{LABEL[arm]}, DDPM", arm=arm,
                               sampler="ddpm", color=color, marker="s", ls="none", mfc="none")
        xs = sorted(set(ev.nfe) | set(ev.ddpm_nfe))
        ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", xticks=xs, xticklabels=[str(n) for n in xs])
    with st.figure("loss", figsize=(5.4, 3.4)) as ax:  # the IP loss is measured on perturbed inputs: higher
        for r in trained["runs"]:
            ax.plot([e["step"] for e in r["history"]], [e["loss"] for e in r["history"]], alpha=0.8,
                    color="C0" if r["arm"] == "baseline" else "C1", label=f"{LABEL[r['arm']]}, seed {r['train_seed']}")
        ax.set(xlabel="step", ylabel="training loss", yscale="log")
    n0 = min(ev.nfe)
    side_by_side(st.out / "samples" / f"ddim{n0}_baseline.png", st.out / "samples" / f"ddim{n0}_method.png",
                 st.figures / f"samples_ddim{n0}.png", [f"baseline, DDIM {n0} steps", f"DDPM-IP γ={cfg.gamma:g}, DDIM {n0}"])

    keys = [k for k in rows[0] if "[" in k]
    results = table(["sampler", "NFE", "model"] + keys, [
        [s, n, LABEL[a]] + [ci_cell(per_unit(st.select(sampler=s, nfe=n, arm=a), k, "train_seed")) for k in keys]
        for s, n in grid(ev) for a in LABEL])
    spread = table(["sampler", "NFE"] + [f"training seed {s}" for s in cfg.train_seeds], [
        [s, n] + [f"{b:.3f} → {m:.3f} ({(m - b) / b:+.1%})" for b, m in (
            (np.mean([r[fid] for r in st.select(sampler=s, nfe=n, arm=a, train_seed=t)]) for a in LABEL)
            for t in cfg.train_seeds)] for s, n in grid(ev)])
    runs = table(["arm", "γ", "seed", "steps", "wall time", "final loss"], [
        [r["arm"], r["gamma"], r["train_seed"], r["steps"], f"{r['seconds']:.0f} s", f"{r['final_loss']:.4f}"]
        for r in trained["runs"]])
    base_file = resolve(cfg, "metrics", "base_model_eval.json")  # absent when run outside DVC (unit tests)
    base = [r for r in json.loads(base_file.read_text())["rows"] if r["arm"] == "method"] if base_file.is_file() else []
    base_ref = (f"against {np.mean([r[fid] for r in base]):.2f} for the {base[0]['model_step']:,}-step shared base "
                f"model at {cfg.base_model.eval.nfe} steps (reports/base_model)" if base else
                "(the shared base model's evaluation, metrics/base_model_eval.json, has not been run)")

    protocol = sampling_protocol(
        cfg, {**res, "base_model_step": cfg.model.train.steps},
        models=f"models/ddpm_ip/<arm>-seed<s>, UNet {list(cfg.model.unet.block_out_channels)}, "
               f"{cfg.model.train.steps} steps, γ ∈ {{0, {cfg.gamma:g}}}, training seeds {list(cfg.train_seeds)}",
        samplers=", ".join(f"{s} {n}" for s, n in grid(ev)) + f", {ev.spacing} respacing, x0 clipped",
        samples=f"{ev.num_samples} x sampling seeds {list(ev.seeds)} per model",
        **{"wall time (train)": f"{trained['train_seconds']:.0f} s"})
    protocol["base model"] = "not used (both arms are trained by this paper's `train` stage)"
    metrics = {"eval_seconds": res["eval_seconds"], "train_seconds": trained["train_seconds"],
               **{f"{fid}.{s}{n}.{a}": v for (s, n, a), v in mean.items()}}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("gamma", "train_seeds", "model", "eval")}, metrics,
               fid=fid, ev=ev, trained=trained, results_table=results, spread_table=spread, runs_table=runs, n0=n0,
               n_hi=max(ev.nfe), mean=mean, n_settings=len(grid(ev)), base_ref=base_ref,
               n_better=sum(mean[(s, n, "method")] < mean[(s, n, "baseline")] for s, n in grid(ev)))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
