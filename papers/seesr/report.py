"""Stage `report`: claims -> verdicts, figures and reports/seesr/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.patch_trunks import LPIPS_NAME, RFID_KEY
from common.report import per_unit, table
from common.report_stage import ReportStage

SR_METRICS = ["digit_acc", "colour_acc", "psnr", "ssim", LPIPS_NAME, RFID_KEY]


def sr_figure(st, samples, seed: int):
    """Rows: LR (8x8, nearest), bicubic, no prompt, SeeSR (LRE), SeeSR (noise start), HR, for the first scenes."""
    names = [("lr", "LR input (8x8)"), ("lr_up", "bicubic"), (f"prompt_baseline_seed{seed}", "no prompt"),
             (f"prompt_method_seed{seed}", "SeeSR (tags + emb.), LRE"), (f"lre_baseline_seed{seed}", "SeeSR, noise start"),
             ("hr", "HR")]
    n = samples["hr"].shape[0]
    with st.figure("sr_samples", figsize=(1.1 * n + 1.6, 1.15 * len(names)), nrows=len(names), ncols=n) as ax:
        for i, (key, label) in enumerate(names):
            for j in range(n):
                a = ax[i, j]
                a.imshow(np.clip((samples[key][j].transpose(1, 2, 0) + 1) / 2, 0, 1), interpolation="nearest")
                a.set_xticks([]), a.set_yticks([])
                if j == 0:
                    a.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")


def tag_figure(st, fig):
    """Per-scene F1 of the tags vs the drawn degradation strength (quartile bins): raw tagger on LR, DAPE on LR
    (mean and range over seeds), the tagger on HR (ceiling)."""
    labels = {"blur_sigma": "first-order blur sigma (px, HR scale)", "noise_sigma": "Gaussian noise sigma (0..255)"}
    with st.figure("tag_f1_vs_degradation", figsize=(9, 3.4), ncols=2) as axes:
        for a, (k, d) in zip(axes, fig.items()):
            e = np.asarray(d["raw"]["edges"])
            x = (e[:-1] + e[1:]) / 2
            lora = np.asarray(d["lora"])
            a.plot(x, d["raw"]["f1"], "o-", label="raw tagger on LR")
            a.plot(x, lora.mean(0), "s-", label=f"DAPE (LoRA) on LR, {len(lora)} seeds")
            a.fill_between(x, lora.min(0), lora.max(0), alpha=0.2, color="C1")
            a.plot(x, d["hr"], "^--", color="grey", label="tagger on HR")
            a.set(xlabel=labels.get(k, k), ylabel="tag F1 (per scene)")


def seed_figure(st, seeds):
    """Each metric per training seed: baseline vs method of each comparison (lines join a seed's pair)."""
    panels = [("dape", "map"), ("dape", "f1"), ("prompt", "digit_acc"), ("prompt", LPIPS_NAME), ("prompt", RFID_KEY),
              ("prompt", "psnr"), ("lre", "psnr")]
    names = {"dape": ("raw", "DAPE"), "prompt": ("no prompt", "SeeSR"), "lre": ("noise start", "LRE")}
    with st.figure("per_seed", figsize=(2.3 * len(panels), 2.8), ncols=len(panels)) as axes:
        for a, (comp, m) in zip(axes, panels):
            b, v = (per_unit(st.rows, m, "train_seed", comparison=comp, arm=arm) for arm in ("baseline", "method"))
            for s, y0, y1 in zip(seeds, b, v):
                a.plot([0, 1], [y0, y1], "o-", label=f"seed {s}")
            a.set_xticks([0, 1], names[comp], fontsize=7)
            a.set_title(f"{comp}: {m}", fontsize=8)


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res = st.cfg, st.results
    dape, trained = st.read("dape.json"), st.read("train.json")
    samples = dict(np.load(st.out / "samples.npz"))
    sr_figure(st, samples, cfg.train_seeds[0])
    tag_figure(st, res["tag_figure"])
    seed_figure(st, cfg.train_seeds)
    tables = {
        "dape": st.ci_table(["tagger on LR", "mAP", "F1"], [(("raw tagger",), dict(comparison="dape", arm="baseline")),
                                                           (("DAPE (LoRA)",), dict(comparison="dape", arm="method"))],
                            ["map", "f1"], "train_seed"),
        "prompt": st.ci_table(["SR model", *SR_METRICS], [(("no prompt",), dict(comparison="prompt", arm="baseline")),
                                                        (("SeeSR",), dict(comparison="prompt", arm="method"))],
                              SR_METRICS, "train_seed"),
        "lre": st.ci_table(["start", *SR_METRICS], [(("pure noise",), dict(comparison="lre", arm="baseline")),
                                                   (("LRE",), dict(comparison="lre", arm="method"))],
                           SR_METRICS, "train_seed"),
    }
    refs = table(["reference", *SR_METRICS], [[r["arm"], *(r[m] for m in SR_METRICS)]
                                              for r in st.select(comparison="reference")])
    hr_tagger = st.select(comparison="dape", arm="hr_tagger")[0]
    refs_digit = {r["arm"]: r["digit_acc"] for r in st.select(comparison="reference")}
    runs = table(["run", "seed", "steps", "wall time", "final loss"],
                 [["tagger", cfg.tagger.train.seed, cfg.tagger.train.steps, f"{dape['tagger']['seconds']:.0f} s",
                   f"{dape['tagger']['final_loss']:.3f}"]]
                 + [["DAPE LoRA", r["train_seed"], cfg.dape.train.steps, f"{r['seconds']:.0f} s",
                     f"{r['final_loss']:.3f}"] for r in dape["runs"]]
                 + [[f"SR {r['arm']}", r["train_seed"], r["steps"], f"{r['seconds']:.0f} s", f"{r['final_loss']:.3f}"]
                    for r in trained["runs"]])
    sizes = {"tagger": dape["tagger"]["params"], "lora": dape["runs"][0]["lora_params"], "unet": trained["runs"][0]["unet_params"],
             "controlnet": trained["runs"][0]["controlnet_params"],
             "image_attentions": trained["runs"][0]["image_attention_params"]}
    st.publish(metrics={"dape_seconds": dape["dape_seconds"], "train_seconds": trained["train_seconds"]},
               tables=tables, refs=refs, refs_digit=refs_digit, runs_table=runs, sizes=sizes, hr_tagger=hr_tagger, dape=dape,
               trained=trained)


if __name__ == "__main__":
    run_main(main)
