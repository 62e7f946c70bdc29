"""Root stage `train_dit`: the shared plain DiT baseline, one run per training seed (params.yaml `dit`).

A class-conditional DiT (common/dit.py: diffusers' DiTTransformer2DModel, DiT's adaLN-Zero initialisation)
trained with EDM's preconditioning and loss (common/edm.py), condition dropout drawn from the training
loop's generator for classifier-free guidance. Papers that compare a transformer recipe against a plain DiT
(MaskDiT, Lumina's absolute-position baseline, the backbone comparison page) read its models instead of
training their own baseline.

Outputs: models/dit/seed<s> (EMA weights at the last step) and models/dit/seed<s>-step<k> for each k in
`dit.snapshots`: under the constant learning rate after warm-up, the EMA at step k of this run IS the final
EMA of a k-step run with the same seed, so a paper can compare at equal training cost without retraining.
Checkpoints live in runs/dit/seed<s>/checkpoints (DVC `persist: true`): an interrupted run resumes from the
newest one and ends with the same weights. metrics/dit_train.json: time, loss curve, parameters per seed.
"""

import json
import sys
from dataclasses import replace
from pathlib import Path

from common.config import RootConfig, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.dit import build_dit, count_parameters, dit_net, read_dir_state, save_dit, train_snapshots
from common.edm import EDM, edm_loss
from common.seeding import seed_everything
from common.tracking import log_run

STAGE = "train_dit"


def build(cfg, channels: int, meta: bool = False):
    """The baseline network of `cfg.dit.net` for images of `channels` x data.resolution^2."""
    net = cfg.dit.net
    return build_dit(net.hidden_size, net.depth, net.num_heads, net.patch_size, cfg.data.resolution, channels,
                     net.num_classes, meta=meta)


def model_dir(cfg, seed: int, step=None) -> Path:
    """models/dit/seed<s> (the last step) or models/dit/seed<s>-step<k> (an EMA snapshot)."""
    last = step is None or step == cfg.dit.train.steps
    return resolve(cfg, cfg.paths.models, "dit", f"seed{seed}" if last else f"seed{seed}-step{step}")


def train_seed(cfg, x, y, seed: int) -> dict:
    """One training run of the baseline; saves its final and snapshot EMA weights, returns its facts."""
    dc = cfg.dit
    seed_everything(seed)
    model = build(cfg, x.shape[1])
    edm, pre = EDM.from_config(dc.edm), EDM.from_config(dc.edm).preconditioner()
    null = dc.net.num_classes

    def loss_fn(m, xb, yb, gen):
        return edm_loss(dit_net(m), edm, xb, yb, gen, dc.train.cond_dropout, null, pre)

    train_cfg = replace(dc.train, seed=seed)
    identity = {"dit": {"net": to_dict(dc.net), "edm": to_dict(dc.edm), "train": to_dict(train_cfg)},
                "data": to_dict(cfg.data)}
    res, snaps = train_snapshots(model, loss_fn, x, y, train_cfg, resolve(cfg, cfg.paths.runs, "dit", f"seed{seed}"),
                                 identity, [Path(__file__)], dc.snapshots, desc=f"DiT seed {seed}")
    meta = {"params": count_parameters(res.model), "edm": to_dict(dc.edm), "net": to_dict(dc.net),
            "resolution": cfg.data.resolution, "train_seed": seed, "dataset": cfg.data.name}
    if res.is_main_process:
        save_dit(res.model, model_dir(cfg, seed), {**meta, "step": res.steps})
        for step, d in snaps.items():
            save_dit(read_dir_state(build(cfg, x.shape[1]), d, STAGE), model_dir(cfg, seed, step), {**meta, "step": step})
    return {"train_seed": seed, "steps": res.steps, "seconds": res.train_seconds, "resumed_from": res.resumed_from_step,
            "params": meta["params"], "final_loss": res.history[-1]["loss"], "snapshots": sorted(snaps),
            "history": res.history}


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    runs = []
    for seed in cfg.dit.train_seeds:
        runs.append(train_seed(cfg, x, y, seed))
        log_run(cfg, "shared", STAGE, {"dit": to_dict(cfg.dit), "data": to_dict(cfg.data)},
                {k: v for k, v in runs[-1].items() if isinstance(v, (int, float))}, seed=seed,
                history=runs[-1]["history"])
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "history"}), flush=True)
    out = resolve(cfg, "metrics", "dit_train.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"train_seconds": sum(r["seconds"] for r in runs), "params": runs[0]["params"],
                               "runs": runs}, indent=2))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
