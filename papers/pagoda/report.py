"""Stage `report`: claims -> verdicts, figures and reports/pagoda/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import per_unit, select, side_by_side, table
from common.report_stage import ReportStage

COMPARISONS = {"x1": ("teacher, Heun", "decoder (rec + GAN), 1 call"), "gan": ("decoder, rec only", "decoder, rec + GAN"),
               "x2": ("teacher + bicubic", "decoder grown 2x"), "x4": ("teacher + bicubic", "decoder grown 4x")}


def metric_of(rows, comparison: str, prefix: str) -> str:
    """The results key of a view (`fid_up[mnist-classifier]`, ...) used by a comparison's rows."""
    keys = [k for k in select(rows, comparison=comparison)[0] if k.startswith(prefix + "[")]
    return keys[0]


def step_figure(st, fid_up: str, arms):
    """FID (8x8 view) vs training step of the decoder at the teacher's resolution, per arm, 95% over seeds."""
    steps = sorted({r["step"] for r in select(st.rows, comparison="curve")})
    names = {"rec_gan": "reconstruction + GAN", "rec": "reconstruction only"}
    st.curves("fid_vs_step", "step", steps, fid_up, {names.get(a, a): {"arm": a} for a in arms}, unit="train_seed",
              comparison="curve")


def loss_figure(st, trained):
    """The reconstruction term per step of the x1 runs (both arms) and the adaptive weight lambda of the GAN arm."""
    with st.figure("losses", figsize=(9, 3.4), ncols=2) as (a1, a2):
        for r in trained["runs"]:
            if r["factor"] != 1:
                continue
            c = "C0" if r["arm"] == "rec_gan" else "C1"
            a1.plot([p["step"] for p in r["parts"]], [p["rec"] for p in r["parts"]], color=c, alpha=0.6,
                    label=f"{r['arm']}" if r["train_seed"] == trained["runs"][0]["train_seed"] else "_")
            if r["arm"] == "rec_gan":
                a2.plot([p["step"] for p in r["parts"]], [p["lambda"] for p in r["parts"]], color=c, alpha=0.6)
        a1.set(xlabel="step", ylabel="L_rec (lpips[digits-cnn])", yscale="log")
        a2.set(xlabel="step", ylabel="adaptive weight lambda", yscale="log")


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res = st.cfg, st.results
    trained, teacher = st.read("train.json"), st.read("teacher.json")
    fid_up, fid, fid_down = (metric_of(st.rows, c, p) for c, p in (("x1", "fid_up"), ("x2", "fid"), ("x4", "fid_down")))
    step_figure(st, fid_up, cfg.decoder.arms)
    loss_figure(st, trained)
    s = st.out / "samples"
    side_by_side(s / "teacher_x1.png", s / "rec_gan_x1.png", st.figures / "samples_x1.png",
                 [f"teacher, Heun ({res['teacher_calls']} calls), 8x8", "decoder, 1 call, same noise"])
    for f in cfg.decoder.growth:
        side_by_side(s / f"teacher_bicubic_x{f}.png", s / f"rec_gan_x{f}.png", st.figures / f"samples_x{f}.png",
                     [f"teacher + bicubic to {res['teacher_resolution'] * f}px", f"decoder grown {f}x, same noise"])
    detail = [k for k in st.rows[-1] if k.startswith("detail_gap")]
    metric = {"x1": [fid_up], "gan": [fid_up], **{f"x{f}": [fid if f * res["teacher_resolution"] ==
                                                              res["data_resolution"] else fid_down] for f in cfg.decoder.growth}}
    if detail:
        metric[f"x{cfg.decoder.growth[-1]}"].append(detail[0])
    tables = {c: st.ci_table(["model", *m], [((COMPARISONS.get(c, (c, c))[a == "method"],), dict(comparison=c, arm=a))
                                            for a in ("baseline", "method")], m, "train_seed")
              for c, m in metric.items()}
    spread = table(["comparison", "metric", *(f"seed {s}" for s in cfg.decoder.train_seeds)], [
        [c, k, *(f"{b:.3g} → {m:.3g}" for b, m in zip(*(per_unit(st.rows, k, "train_seed", comparison=c, arm=a)
                                                        for a in ("baseline", "method"))))]
        for c, ms in metric.items() for k in ms])
    runs = table(["run", "seed", "resolution", "steps", "params", "trained", "wall time", "final loss"], [
        [r["name"], r["train_seed"], r["resolution"], r["steps"], f"{r['params']:,}", f"{r['trainable']:,}",
         f"{r['seconds']:.0f} s", f"{r['final_loss']:.3f}"] for r in trained["runs"]])
    mean = {(c, a, k): float(np.mean(per_unit(st.rows, k, "train_seed", comparison=c, arm=a)))
            for c, ms in metric.items() for k in ms for a in ("baseline", "method")}
    st.publish(metrics={"train_seconds": trained["train_seconds"], "teacher_seconds": teacher["seconds"]},
               trained=trained, teacher=teacher, tables=tables, spread_table=spread, runs_table=runs, mean=mean,
               fid_up=fid_up, fid=fid, fid_down=fid_down, detail=detail[0] if detail else None)


if __name__ == "__main__":
    run_main(main)
