"""Stage `train`: Inf-DiT for 4x super-resolution of digit canvases, one run per training seed.

HR images are canvases of the shared data.resolution-px digits (data/prepared, train split) tiled in a grid and
cropped at a random offset (`canvases`): canvas.size px a side, so a training image holds (size / cell)^2 digits
cut at random places and the UniBA blocks do not line up with the digits. LR = bicubic downsampling with
antialiasing (method.downsample). Each seed builds its own canvases (seeded), then trains with EDM's loss
(method.sr_loss: sigma ~ logN(P_mean, P_std^2), the random RoPE offset) through common.training (Accelerate,
resumable checkpoints in runs/inf_dit/seed<s>/checkpoints). Saves the EMA weights to models/inf_dit/seed<s> and
writes reports/inf_dit/train.json (per-seed facts and loss curves).
"""

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional, Tuple

import torch

from common.atomic import atomic_file
from common.config import load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.dit import count_parameters, read_dir_state, read_meta, train_snapshots, write_dir_state
from common.edm import EDM
from common.seeding import seed_everything
from common.tracking import log_run
from papers.inf_dit import method
from papers.inf_dit.config import InfDiTConfig

PAPER = "inf_dit"
STAGE = f"papers/{PAPER}/dvc.yaml:train"


def build(cfg, channels: int, meta: bool = False) -> method.InfDiT:
    """The network of `cfg.net` for `channels`-channel images (on the meta device: shapes only)."""
    n = cfg.net
    with torch.device("meta") if meta else torch.device("cpu"):
        return method.InfDiT(channels, n.patch_size, n.dim, n.depth, n.heads, n.block_tokens, n.sr_scale,
                             n.lr_embed_dim, n.mlp_ratio, n.cross_lr)


def canvases(x: torch.Tensor, y: torch.Tensor, n: int, height: int, width: int, generator: torch.Generator,
             offset: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """n HR images uint8 [n, C, height, width]: a grid of random digits x (uint8 [K, C, r, r]) one cell larger
    than the image, cropped at a random offset in [0, r) per axis, or at `offset` on both axes. Also returns the
    labels of the grid [n, rows, cols] (cell (a, b) starts at pixel (a r - offset, b r - offset))."""
    r = x.shape[-1]
    rows, cols = height // r + 1, width // r + 1
    idx = torch.randint(0, len(x), (n, rows, cols), generator=generator)
    big = x[idx].permute(0, 3, 1, 4, 2, 5).reshape(n, x.shape[1], rows * r, cols * r)
    off = (torch.randint(0, r, (n, 2), generator=generator) if offset is None
           else torch.full((n, 2), offset, dtype=torch.long))
    hr = torch.stack([big[k, :, a:a + height, b:b + width] for k, (a, b) in enumerate(off.tolist())])
    return hr, y[idx]


def model_dir(cfg, seed: int) -> Path:
    return resolve(cfg, cfg.paths.models, PAPER, f"seed{seed}")


def load_model(cfg, seed: int, channels: int) -> method.InfDiT:
    """The EMA weights of training seed `seed`, in eval mode."""
    d = model_dir(cfg, seed)
    model = read_dir_state(build(cfg, channels), d, STAGE)
    read_meta(d, STAGE)
    return model.eval().requires_grad_(False)


def train_seed(cfg, x: torch.Tensor, y: torch.Tensor, seed: int) -> dict:
    """One run: seeded canvases, seeded init, EDM loss; saves the EMA weights, returns the run's facts."""
    seed_everything(seed)
    hr, _ = canvases(x, y, cfg.canvas.num_train, cfg.canvas.size, cfg.canvas.size, torch.Generator().manual_seed(seed))
    model = build(cfg, x.shape[1])
    edm = EDM.from_config(cfg.edm)
    pre = edm.preconditioner()

    def loss_fn(m, hr_batch, _index, gen):
        return method.sr_loss(m, edm, to_model_range(hr_batch), gen, pre)

    train_cfg = replace(cfg.train, seed=seed)
    identity = {"net": to_dict(cfg.net), "edm": to_dict(cfg.edm), "train": to_dict(train_cfg),
                "canvas": to_dict(cfg.canvas), "data": to_dict(cfg.data)}
    res, _ = train_snapshots(model, loss_fn, hr, torch.arange(len(hr)), train_cfg,
                             resolve(cfg, cfg.paths.runs, PAPER, f"seed{seed}"), identity,
                             [Path(__file__), Path(method.__file__)], desc=f"Inf-DiT seed {seed}")
    params = count_parameters(res.model)
    if res.is_main_process:
        write_dir_state(res.model, model_dir(cfg, seed), {"params": params, "train_seed": seed, "step": res.steps,
                                                          "net": to_dict(cfg.net), "edm": to_dict(cfg.edm)})
    return {"train_seed": seed, "steps": res.steps, "seconds": res.train_seconds, "params": params,
            "final_loss": res.history[-1]["loss"], "history": [{"step": h["step"], "loss": h["loss"]} for h in res.history]}


def main(argv=None):
    cfg = load_config(InfDiTConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    runs = []
    for seed in cfg.train_seeds:
        run = train_seed(cfg, x, y, seed)
        runs.append(run)
        log_run(cfg, PAPER, "train", {"net": to_dict(cfg.net), "train": to_dict(cfg.train)},
                {k: v for k, v in run.items() if isinstance(v, (int, float))}, seed=seed, history=run["history"])
        print(json.dumps({k: v for k, v in run.items() if k != "history"}), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "train.json") as tmp:
        tmp.write_text(json.dumps({"runs": runs, "train_seconds": sum(r["seconds"] for r in runs)}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
