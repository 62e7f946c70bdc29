"""Stage `evaluate`: every backbone at each training budget, one evaluation protocol, and one interleaved benchmark.

Protocol (papers/maskdit's evaluation, whose rows are reused): `num_samples` samples per set, sample j with label
j mod 10 and initial noise from its own seed (common.sampling.sample_seeds of the maskdit sampling seed), `nfe`
network calls per sample with each backbone's own sampler and no guidance, scored in the shared classifier's feature
space (fid / kid / precision / recall / class accuracy [mnist-classifier] against the held-out reference).
  DiT       EDM DPM-Solver++(2M), rows of reports/maskdit/results.json (cost_curve: its snapshots)
  MaskDiT   EDM DPM-Solver++(2M) after unmask tuning, rows of reports/maskdit/results.json (equal_cost, method)
  Flag-DiT  Euler on the flow (its paper's sampler, papers/lumina_flag_dit's time shift), sampled here from the
            models of this page's `train` stage
  UNet      the shared base model with its own sampler (`unet_sampler`), sampled here; one trained model, a reference
Benchmark: the training step of each backbone (its own batch), timed interleaved in rounds in one run (the protocol
of papers/maskdit's benchmark stage), and its activation memory (saved tensors on the CPU, peak allocated on a GPU).
A row's `train_seconds` is its training steps x the backbone's median benchmarked step time: training time on one
machine in one run, not the wall time of trainings that ran at other times.

Writes reports/backbone_comparison/results.json (one row per backbone x budget x training seed), benchmark.json and
pairs.json (the claims' paired rows).
"""

import platform
import statistics
import sys

import torch

from common.comparison import pair_rows, write_pairs
from common.config import read_json, resolve
from common.data import load_split, to_model_range, to_uint8
from common.devices import default_device
from common.eval_stage import EvalStage
from common.evaluation import SampleScorer
from common.experiment import BaseModelExperiment, real_floor
from common.flow_matching import euler_sample
from common.report import class_grid
from common.sampling import SampleNoise, SamplingSpec, balanced_labels, sample_seeds
from papers.backbone_comparison import backbones as bb
from papers.backbone_comparison.config import BackboneComparisonConfig
from papers.backbone_comparison.settings import PAGE, paper_configs, select
from papers.backbone_comparison.train import model_dir
from papers.lumina_flag_dit import method as flag
from papers.lumina_flag_dit.train import load_model
from papers.maskdit.benchmark import activation_bytes, timed_steps
from papers.maskdit.train import masked_steps
from papers.maskdit.train import step_flops as maskdit_step_flops

EQUAL = "equal_compute"  # the claims' comparison at the equal-compute budget (MaskDiT's)


def maskdit_rows(reports, s, metric_keys):
    """DiT rows at each snapshot and MaskDiT's rows at its budget, from papers/maskdit's evaluation."""
    rows = read_json(reports / "maskdit" / "results.json", "papers/maskdit/dvc.yaml:evaluate", ["rows"])["rows"]
    out = []
    for r in rows:
        if r.get("guidance") != 1.0 or r["sample_seed"] != s.sample_seed:
            continue
        if r["comparison"] == "cost_curve":
            out.append(("DiT", r["dit_step"], r))
        elif r["comparison"] == "equal_cost" and r["arm"] == "method":
            out.append(("MaskDiT", None, r))
    return [{"arm": arm, "budget": budget, "train_seed": r["train_seed"], "sample_seed": r["sample_seed"],
             "source": "maskdit", **{k: r[k] for k in metric_keys}} for arm, budget, r in out]


def sample_flag(net, tok, s, shift: float, res: int, device) -> tuple:
    """(uint8 images, labels): Euler on the flow from each sample's own seeded noise, labels j mod 10, no guidance."""
    labels = balanced_labels(s.num_samples, 10)
    noise = SampleNoise(sample_seeds(s.sample_seed, s.num_samples), (net.in_channels, res, res))()
    v = flag.flag_dit_velocity(net.to(device), tok, labels.to(device))
    with torch.inference_mode():
        return to_uint8(euler_sample(v, noise.to(device), s.nfe, shift).cpu()), labels


def benchmark(cfg, nets, x, y, device, stage: EvalStage) -> dict:
    """Median training step seconds (per interleaved round: the rows) and activation memory of every backbone."""
    bc, names = cfg.benchmark, list(nets)
    models = {k: nets[k].build(False).to(device).train() for k in names}
    losses = {k: nets[k].loss(nets[k].cond_dropout) for k in names}
    opts = {k: torch.optim.AdamW(models[k].parameters(), lr=1e-4) for k in names}
    batch = {k: (x[:nets[k].batch_size].to(device), y[:nets[k].batch_size].to(device)) for k in names}
    for k in names:
        timed_steps(models[k], losses[k], opts[k], *batch[k], bc.warmup, 0, device)
    rows = []
    for r in range(bc.rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            t = timed_steps(models[k], losses[k], opts[k], *batch[k], bc.steps_per_round, 1000 * (r + 1), device)
            rows.append({"comparison": "speed", "arm": k, "round": r, "step_seconds": t})
    per = {k: {"batch_size": nets[k].batch_size, "params": sum(p.numel() for p in models[k].parameters()),
               "memory_mb": activation_bytes(models[k], losses[k], *batch[k], device) / 2**20,
               "median_step_seconds": statistics.median(r["step_seconds"] for r in rows if r["arm"] == k)}
           for k in names}
    stage.write_json("benchmark.json", {
        "networks": per, "rows": rows, "device": str(device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "memory_kind": "peak allocated (CUDA)" if device.type == "cuda" else "saved activations (autograd, CPU)"})
    return {"per": per, "rows": rows}


def train_seconds(row, per: dict, mask_cfg, mask_flops: dict) -> float:
    """Training steps x the benchmarked median step time. MaskDiT's unmask-tuning steps (mask ratio 0, not timed)
    are counted at its masked step time scaled by their FLOP ratio."""
    t = per[row["arm"]]["median_step_seconds"]
    if row["arm"] != "MaskDiT":
        return row["train_steps"] * t
    tuning = mask_cfg.unmask.steps
    return (row["train_steps"] - tuning) * t + tuning * t * mask_flops["unmasked"] / mask_flops["masked"]


def main(argv=None):
    stage = EvalStage.load(BackboneComparisonConfig, PAGE, argv)
    cfg = stage.cfg
    mask_cfg, flag_cfg = paper_configs(sys.argv[1:] if argv is None else argv)
    s, device = select(cfg, mask_cfg), default_device()
    data_dir, reports = resolve(cfg, cfg.paths.data, "prepared"), resolve(cfg, cfg.paths.reports)
    scorer = SampleScorer(data_dir, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name, device=device)
    x, y = load_split(data_dir, "train")
    x = to_model_range(x)
    nets = bb.backbones(cfg, mask_cfg, flag_cfg, x.shape[1])
    flops = {k: bb.step_flops(b, x.shape[1], cfg.data.resolution) for k, b in nets.items()}
    keys = [scorer.key(m) for m in ("fid", "kid", "precision", "recall", "class_acc")]
    bench = benchmark(cfg, nets, x, y, device, stage)
    mask_flops = maskdit_step_flops(mask_cfg, x.shape[1])
    train = read_json(reports / PAGE / "train.json", f"papers/{PAGE}/dvc.yaml:train", ["flag_steps"])

    rows = maskdit_rows(reports, s, keys)
    for r in rows:  # MaskDiT's FLOPs are the DiT's at cost_step by construction (papers/maskdit/train.py)
        r["budget"] = r["budget"] or mask_cfg.cost_step
        r["train_steps"] = r["budget"] if r["arm"] == "DiT" else masked_steps(mask_cfg, mask_flops) + mask_cfg.unmask.steps
    tok = flag.CaptionTokenizer(flag_cfg.captions)
    for seed in mask_cfg.dit.train_seeds:
        for b in s.budgets:
            net, meta = load_model(flag_cfg, model_dir(cfg, seed, b))
            img, lab = sample_flag(net, tok, s, flag_cfg.eval.shift, cfg.data.resolution, device)
            rows.append({"arm": "Flag-DiT", "budget": b, "train_seed": seed, "sample_seed": s.sample_seed,
                         "source": PAGE, "train_steps": meta["step"], **scorer.score(img, lab)})
            stage.log(**rows[-1])
            if seed == mask_cfg.dit.train_seeds[0] and b == s.budgets[-1]:
                stage.save_grid(class_grid(img, lab), f"flag_dit_b{b}", n=None)
    exp = BaseModelExperiment(cfg, device=device)
    img, lab, _ = exp.sample(SamplingSpec(s.num_samples, s.nfe, cfg.unet_sampler, seed=s.sample_seed), progress=False)
    unet_steps = cfg.base_model.train.steps
    rows.append({"arm": "UNet", "budget": unet_steps * flops["UNet"] / flops["DiT"], "train_seed": cfg.base_model.train.seed,
                 "sample_seed": s.sample_seed, "source": PAGE, "train_steps": unet_steps, **exp.score(img, lab)})
    stage.save_grid(class_grid(img, lab), "unet", n=None)

    for r in rows:
        r["seed"] = r["train_seed"]  # the replication unit: a trained network
        r["train_flops"] = r["budget"] * flops["DiT"]
        r["train_seconds"] = train_seconds(r, bench["per"], mask_cfg, mask_flops)
        stage.add(**r)
    pairs = [(f"{m}_vs_{b}", m, b, {"budget": mask_cfg.cost_step})
             for m, b in (("MaskDiT", "DiT"), ("Flag-DiT", "DiT"), ("Flag-DiT", "MaskDiT"))]
    speed = [p for m in ("MaskDiT", "Flag-DiT") for p in pair_rows(bench["rows"], f"{m}_vs_DiT_speed", m, "DiT", "round")]
    write_pairs(stage.out / "pairs.json", stage.rows, pairs, unit="seed", more=speed)
    stage.write(metric=scorer.key("fid"), keys=keys, budgets=s.budgets, cost_step=mask_cfg.cost_step, nfe=s.nfe,
                num_samples=s.num_samples, sample_seed=s.sample_seed, step_flops=flops,
                flag_steps=train["flag_steps"], unet_sampler=cfg.unet_sampler, flag_shift=flag_cfg.eval.shift,
                floors=real_floor(scorer, data_dir, s.num_samples, 10, cfg.seed), floor_samples=s.num_samples,
                backbone=scorer.backbone, benchmark=bench["per"])


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
