"""Stage `train`: the time-free SingDiffusion net ybar_phi(c) on the prepared training split.

Loss at t = 1 (papers/sing_diffusion/method.py): E || x_0 - ybar_phi(c) ||^2, with the label dropped
to the null class at `train.cond_dropout` so the net also learns ybar_u for guidance. Uses the
shared Accelerate loop (common/training.py: EMA, checkpoints in runs/sing_diffusion/checkpoints,
resume). Writes runs/sing_diffusion/net and reports/sing_diffusion/train.json, whose
`max_abs_error_vs_class_means` compares the net with the closed form E[x0 | c] (class means).
"""

import dataclasses
import json
import sys
from pathlib import Path

import torch

import common.data
import common.training
from common.atomic import atomic_dir
from common.config import load_config, reading, require, resolve, to_dict
from common.data import load_split, to_model_range
from common.seeding import seed_everything
from common.training import fingerprint, train
from papers.sing_diffusion import method
from papers.sing_diffusion.config import SingDiffusionConfig
from papers.sing_diffusion.method import SingDiffusionNet, singularity_loss

PAPER = "sing_diffusion"


def save_net(net: SingDiffusionNet, out_dir: Path, meta: dict):
    """Weights (safetensors) + constructor arguments, written to a temp dir then renamed."""
    from safetensors.torch import save_file

    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))


def load_net(net_dir: Path) -> SingDiffusionNet:
    """The net written by `save_net`; missing or unreadable: a UserError naming the path and the stage `train`."""
    from safetensors.torch import load_file

    stage = f"papers/{PAPER}/dvc.yaml:train"
    net_dir = require(net_dir, stage, marker="config.json")
    with reading(net_dir / "config.json", stage):
        meta = json.loads((net_dir / "config.json").read_text())
        net = SingDiffusionNet(meta["num_classes"], meta["shape"], meta["embed_dim"], meta["hidden"])
    with reading(net_dir / "model.safetensors", stage):
        net.load_state_dict(load_file(str(net_dir / "model.safetensors")))
    return net.eval().requires_grad_(False)


def class_means(x0: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The closed form the net should learn: E[x0 | c] for c < K, and E[x0] for the null class K."""
    means = [x0[y == c].mean(0) for c in range(num_classes)]
    return torch.stack(means + [x0.mean(0)])


def main(argv=None):
    cfg = load_config(SingDiffusionConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    tc = cfg.train
    seed_everything(tc.seed)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x0 = to_model_range(x)
    k = cfg.base_model.unet.num_classes
    if k == 0:  # unconditional base model: every image belongs to the null class
        y = torch.zeros_like(y)
    net = SingDiffusionNet(k, x0.shape[1:], cfg.net.embed_dim, cfg.net.hidden)

    def loss_fn(model, xb, yb, gen):
        return singularity_loss(model, xb, yb, gen, tc.cond_dropout if k else 0.0)

    config = {"net": dataclasses.asdict(cfg.net), "train": dataclasses.asdict(tc),
              "data": dataclasses.asdict(cfg.data), "num_classes": k}
    run_id = fingerprint(config, [Path(__file__), Path(method.__file__), Path(common.training.__file__),
                                  Path(common.data.__file__)])
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    res = train(net, loss_fn, (x0, y), tc, run_dir / "checkpoints", desc="SingDiffusion net",
                run_fingerprint=run_id)
    if not res.is_main_process:
        return
    trained = res.model.eval()
    with torch.no_grad():
        pred = trained(torch.arange(k + 1))
    target = class_means(x0, y, k) if k else x0.mean(0, keepdim=True)
    err = (pred - target).abs()
    save_net(trained, run_dir / "net", {"num_classes": k, "shape": list(x0.shape[1:]),
                                        "embed_dim": cfg.net.embed_dim, "hidden": cfg.net.hidden,
                                        "config": to_dict(cfg)["train"]})
    metrics = {"final_loss": res.history[-1]["loss"], "train_seconds": res.train_seconds, "steps": res.steps,
               "params": sum(p.numel() for p in trained.parameters()),
               "max_abs_error_vs_class_means": float(err.max()), "mean_abs_error_vs_class_means": float(err.mean()),
               "resumed_from": res.resumed_from or 0, "resumed_from_step": res.resumed_from_step}
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps({**metrics, "history": res.history}, indent=2))
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
