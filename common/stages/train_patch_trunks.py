"""Root stage `train_patch_trunks`: the RGB trunks of lpips[patches-cnn] and rfid[patches-cnn] (params.yaml
`patch_trunks`; common/patch_trunks.py says why two trunks and what each one is trained to tell apart).

Both are trained on the `train` patches of data/patches (root stage prepare_patches) in [-1, 1]: the LPIPS trunk
to name each crop's photograph, the rFID trunk to name its photograph and its rotation (every crop at 4
rotations), from another seed. Held-out accuracy is measured on the `heldout` patches (other regions of the
same photos).

Outputs: models/patch_trunks/{lpips,fid} (weights.pt + meta.json) and metrics/patch_trunks.json (times,
accuracies, parameter counts).
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from common import patch_trunks as pt
from common.config import RootConfig, load_config, resolve, to_dict
from common.data import to_model_range
from common.image_patches import PHOTOS, load_patches
from common.perceptual import fit_trunk, save_trunk
from common.tracking import log_run

OBJECTIVES = {pt.LPIPS_KIND: "cross-entropy: which photograph a train crop comes from; heads = unit weights",
              pt.FID_KIND: "cross-entropy: which photograph and which 90-degree rotation (every train crop at 4)"}
NAMES = {pt.LPIPS_KIND: pt.LPIPS_NAME, pt.FID_KIND: pt.RFID_KEY}


def split(cfg, name: str):
    p = load_patches(cfg, name)
    return to_model_range(p.images), torch.from_numpy(pt.photo_labels(p.sources, PHOTOS))


def train_one(cfg, kind: str, x, y, xh, yh, seed: int) -> dict:
    net, train_cfg = getattr(cfg.patch_trunks, kind), dataclasses.replace(cfg.patch_trunks.train, seed=seed)
    num_classes = len(PHOTOS) * (pt.ROTATIONS if kind == pt.FID_KIND else 1)
    identity = {"patch_trunks": {kind: to_dict(net), "train": to_dict(train_cfg)}, "patches": to_dict(cfg.patches)}
    trunk, facts, res = fit_trunk(net, train_cfg, x, y, xh, yh, run_dir=resolve(cfg, cfg.paths.runs, "patch_trunks", kind),
                                  desc=f"{kind} trunk", identity=identity, files=[Path(__file__)],
                                  num_classes=num_classes)
    meta = {"name": NAMES[kind], "in_channels": int(x.shape[1]), "input_shape": list(x.shape[1:]),
            "net": to_dict(net), "num_classes": num_classes, "seed": seed, **facts, "objective": OBJECTIVES[kind]}
    if res.is_main_process:
        save_trunk(trunk, pt.trunk_dir(cfg, kind), meta)
    return {**meta, "train_seconds": res.train_seconds, "history": res.history}


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    (x, y), (xh, yh) = split(cfg, "train"), split(cfg, "heldout")
    out = {pt.LPIPS_KIND: train_one(cfg, pt.LPIPS_KIND, x, y, xh, yh, cfg.patch_trunks.train.seed),
           pt.FID_KIND: train_one(cfg, pt.FID_KIND, *pt.rotation_task(x, y), *pt.rotation_task(xh, yh), cfg.patch_trunks.fid_seed)}
    summary = {k: {m: v[m] for m in ("name", "params", "num_classes", "heldout_accuracy", "train_seconds")}
               for k, v in out.items()}
    metrics = resolve(cfg, "metrics", "patch_trunks.json")
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text(json.dumps({"stage_seconds": time.time() - t0, **out}, indent=2))
    log_run(cfg, "shared", pt.STAGE, {"patch_trunks": to_dict(cfg.patch_trunks)},
            {f"{k}_{m}": v[m] for k, v in summary.items() for m in ("heldout_accuracy", "train_seconds")})
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
