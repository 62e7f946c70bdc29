"""Stage `train`: Flag-DiT trained at the DiT's training FLOPs, one run per training seed.

The DiT (root stage train_dit) and MaskDiT (papers/maskdit) already exist at each budget of this page; Flag-DiT
(papers/lumina_flag_dit) was trained for its own paper's step count. Here it is trained again with its paper's
recipe (params `net`, `train`, `t_dist`, caption dropout; constant learning rate after warm-up) until it has spent
the FLOPs of the last budget, keeping its EMA weights at the step where each budget's FLOPs are spent: under a
constant learning rate the EMA at step k of one run is the final EMA of a run of length k, as for the DiT snapshots.
Seed s of Flag-DiT shares data order and noise seeds with DiT seed s only through the trainer's seeding (the
networks differ), so the seed is a replication unit, not a pairing of identical draws.

Writes models/backbone_comparison/flag-seed<s>-b<budget> and reports/backbone_comparison/train.json.
"""

import dataclasses
import json
import sys
from pathlib import Path

import torch

from common.atomic import atomic_file
from common.config import load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.dit import read_dir_state, train_snapshots
from common.seeding import seed_everything
from common.tracking import log_run
from papers.backbone_comparison import backbones as bb
from papers.backbone_comparison.config import BackboneComparisonConfig
from papers.backbone_comparison.settings import PAGE, paper_configs, select
from papers.lumina_flag_dit.train import save_model

STAGE = f"papers/{PAGE}/dvc.yaml:train"


def model_dir(cfg, seed: int, budget: int) -> Path:
    return resolve(cfg, cfg.paths.models, PAGE, f"flag-seed{seed}-b{budget}")


def train_seed(cfg, flag_cfg, flag: bb.Backbone, steps: dict, seed: int, x, y) -> dict:
    """One Flag-DiT run to the last budget's step; its EMA weights at every budget's step."""
    seed_everything(seed)
    net = flag.build(False)
    tc = dataclasses.replace(flag_cfg.train, seed=seed, steps=max(steps.values()))
    identity = {"net": to_dict(flag_cfg.net), "train": to_dict(tc), "t_dist": flag_cfg.t_dist,
                "captions": list(flag_cfg.captions), "data": to_dict(cfg.data)}
    res, snaps = train_snapshots(net, flag.loss(tc.cond_dropout), x, y, tc,
                                 resolve(cfg, cfg.paths.runs, PAGE, f"flag-seed{seed}"), identity,
                                 [Path(__file__), Path(bb.__file__)], sorted(steps.values()), desc=f"Flag-DiT seed {seed}")
    params = sum(p.numel() for p in res.model.parameters())
    if res.is_main_process:
        for budget, step in steps.items():
            model = res.model if step == tc.steps else read_dir_state(flag.build(False), snaps[step], STAGE)
            save_model(model, model_dir(cfg, seed, budget), {"arm": bb.FLAG_ARM.name, "in_channels": int(x.shape[1]),
                                                             "train_seed": seed, "step": step, "budget": budget,
                                                             "params": params})
    return {"train_seed": seed, "steps": res.steps, "seconds": res.train_seconds, "params": params,
            "resumed_from": res.resumed_from_step, "final_loss": res.history[-1]["loss"],
            "history": [{"step": h["step"], "loss": h["loss"]} for h in res.history]}


def main(argv=None):
    overrides = sys.argv[1:] if argv is None else list(argv)
    cfg = load_config(BackboneComparisonConfig, paper=PAGE, overrides=overrides)
    mask_cfg, flag_cfg = paper_configs(overrides)
    budgets = select(cfg, mask_cfg).budgets
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    nets = bb.backbones(cfg, mask_cfg, flag_cfg, x.shape[1])
    flops = {k: bb.step_flops(nets[k], x.shape[1], cfg.data.resolution) for k in ("DiT", "Flag-DiT")}
    steps = dict(zip(budgets, bb.steps_at_budgets(budgets, flops["DiT"], flops["Flag-DiT"])))
    runs = []
    for seed in mask_cfg.dit.train_seeds:  # the DiT's and MaskDiT's training seeds
        runs.append(train_seed(cfg, flag_cfg, nets["Flag-DiT"], steps, seed, x, y))
        log_run(cfg, PAGE, "train", {"net": to_dict(flag_cfg.net), "train": to_dict(flag_cfg.train), "steps": steps},
                {k: v for k, v in runs[-1].items() if isinstance(v, (int, float))}, seed=seed,
                history=runs[-1]["history"])
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "history"}), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAGE)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "train.json") as tmp:
        tmp.write_text(json.dumps({"budgets": budgets, "flag_steps": {str(b): s for b, s in steps.items()},
                                   "step_flops": flops, "flag_width": flag_cfg.net.dim, "threads": torch.get_num_threads(),
                                   "train_seconds": sum(r["seconds"] for r in runs), "runs": runs}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
