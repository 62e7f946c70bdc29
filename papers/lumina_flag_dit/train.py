"""Stage `train`: four arms x the training seeds, all with flow matching (x1 = data) on captioned digits.

- `flag`: Flag-DiT (1-D RoPE with [nextline], QK-norm, zero-init gates) with the main recipe (`train`);
- `absolute`: the same network with a 2-D sin-cos absolute position table instead of RoPE and [nextline];
- `qknorm` / `no_qknorm`: Flag-DiT with and without QK-norm at the high learning rate (`stability`).

Every arm of a seed starts from the same seed (init of the shared parts, data order, noise, caption dropout).
Each run resumes from runs/lumina_flag_dit/<arm>-seed<s>/checkpoints after an interruption, saves its EMA
weights to models/lumina_flag_dit/<arm>-seed<s>, records every step's loss and the cross-attention gates,
and ends with the stability numbers declared in params.yaml (spikes, divergence, final loss) and the largest
self-attention logit on a fixed batch. Writes reports/lumina_flag_dit/train.json (rows for the claims, curves).
"""

import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import torch

import common.flow_matching
import common.training
from common.atomic import atomic_dir, atomic_file
from common.config import load_config, read_json, reading, require, resolve, to_dict
from common.data import load_split, to_model_range
from common.flow_matching import flow_matching_loss
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import NonFiniteLossError, fingerprint, resume_step, train
from papers.lumina_flag_dit import method
from papers.lumina_flag_dit.config import LuminaFlagDiTConfig

PAPER = "lumina_flag_dit"
HERE = Path(__file__).parent


@dataclasses.dataclass
class Arm:
    name: str
    position: str            # rope1d | absolute
    qk_norm: bool
    comparison: str          # main | stability
    role: str                # the claims' arm: flag / absolute (main), method / baseline (stability)


ARMS = [Arm("flag", "rope1d", True, "main", "flag"), Arm("absolute", "absolute", True, "main", "absolute"),
        Arm("qknorm", "rope1d", True, "stability", "method"), Arm("no_qknorm", "rope1d", False, "stability", "baseline")]


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def recipe(cfg, arm: Arm, seed: int):
    """The TrainConfig of one run: the main recipe, or the same at the stability lr / steps / warm-up."""
    tc = dataclasses.replace(cfg.train, seed=seed)
    if arm.comparison == "stability":
        st = cfg.stability
        tc = dataclasses.replace(tc, lr=st.lr, steps=st.steps, warmup_steps=st.warmup_steps,
                                 checkpoint_every=min(tc.checkpoint_every, st.steps))
    return tc


def build_net(cfg, arm: Arm, in_channels: int) -> method.FlagDiT:
    n = cfg.net
    return method.FlagDiT(in_channels, n.patch_size, n.dim, n.depth, n.heads, n.cap_dim,
                          method.CaptionTokenizer(cfg.captions).vocab_size, n.multiple_of, arm.qk_norm, arm.position,
                          cfg.data.resolution // n.patch_size, n.norm_eps, n.rope_theta)


# --------------------------------------------------------------------------- weights on disk
def save_model(net: method.FlagDiT, out_dir: Path, meta: dict):
    """safetensors weights + the meta needed to rebuild the network, written atomically."""
    from safetensors.torch import save_file

    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_model(cfg, model_dir: Path):
    """(FlagDiT in eval mode, meta) of a run saved by this stage."""
    from safetensors.torch import load_file

    model_dir = require(model_dir, f"papers/{PAPER}/dvc.yaml:train", marker="meta.json")
    meta = read_json(model_dir / "meta.json")
    arm = next(a for a in ARMS if a.name == meta["arm"])
    net = build_net(cfg, arm, meta["in_channels"])
    with reading(model_dir / "model.safetensors", f"papers/{PAPER}/dvc.yaml:train"):
        net.load_state_dict(load_file(str(model_dir / "model.safetensors")))
    return net.eval().requires_grad_(False), meta


# --------------------------------------------------------------------------- monitoring
class GateLog:
    """Mean |tanh g| per block every `every` optimizer steps, recorded from inside the loss function (the shared
    trainer has no per-step hook). A resumed run starts at the trainer's resume step and drops later records."""

    def __init__(self, path: Path, every: int, start: int):
        old = json.loads(path.read_text()) if path.is_file() and start else []
        self.path, self.every, self.step = path, every, start
        self.records = [r for r in old if r["step"] < start]

    def __call__(self, net: method.FlagDiT):
        if self.step % self.every == 0:
            self.record(net)
        self.step += 1

    def record(self, net: method.FlagDiT):
        g = net.gates().abs()
        self.records.append({"step": self.step, "mean": float(g.mean()), "per_block": g.mean(1).tolist()})
        if int(os.environ.get("RANK", "0")) == 0:  # one writer under `accelerate launch`
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.path) as tmp:
                tmp.write_text(json.dumps(self.records))


def stability_numbers(losses: List[float], warmup: int, st, nonfinite: bool) -> dict:
    """The definitions of params.yaml `stability`: spikes after the warm-up, final loss, divergence."""
    x = np.asarray(losses, dtype=float)
    w = st.spike_window
    spikes = sum(int(x[s] > st.spike_factor * np.median(x[s - w:s])) for s in range(warmup + w, len(x)))
    tail = x[-max(1, int(round(st.final_share * len(x)))):]
    final = float(np.mean(tail)) if not nonfinite else float(x[0])  # a non-finite run: no better than untrained
    return {"spikes": spikes, "final_loss": final,
            "diverged": int(nonfinite or final >= st.diverged_ratio * float(x[0])), "first_loss": float(x[0])}


def probe_batch(x, y, tok, n: int = 64):
    """A fixed batch for the attention-logit probe: the first n training images at t = 0.5, seeded noise."""
    g = torch.Generator().manual_seed(1234)
    x1 = x[:n]
    x0 = torch.randn(x1.shape, generator=g)
    ids, mask = tok(y[:n])
    return 0.5 * x1 + 0.5 * x0, torch.full((len(x1),), 0.5), ids, mask


# --------------------------------------------------------------------------- one run
def train_run(cfg, arm: Arm, seed: int, x, y) -> dict:
    tok, tc = method.CaptionTokenizer(cfg.captions), recipe(cfg, arm, seed)
    name = run_name(arm.name, seed)
    run_dir, out_dir = resolve(cfg, cfg.paths.runs, PAPER, name), resolve(cfg, cfg.paths.models, PAPER, name)
    seed_everything(seed)
    net = build_net(cfg, arm, x.shape[1])
    identity = {"arm": dataclasses.asdict(arm), "net": to_dict(cfg.net), "train": to_dict(tc), "data": to_dict(cfg.data),
                "captions": list(cfg.captions), "t_dist": cfg.t_dist}
    run_id = fingerprint(identity, [Path(__file__), Path(method.__file__), Path(common.flow_matching.__file__),
                                    Path(common.training.__file__)])
    ckpt = run_dir / "checkpoints"
    gates = GateLog(run_dir / "gates.json", cfg.gate_every, resume_step(ckpt, run_id))

    def loss_fn(model, xb, yb, gen):
        gates(getattr(model, "module", model))  # the network itself under a distributed wrapper
        drop = method.caption_dropout(yb, tc.cond_dropout, gen)
        return flow_matching_loss(method.flag_dit_velocity(model, tok, yb, drop), xb, gen, cfg.t_dist)

    t0, nonfinite = time.time(), False
    try:
        res = train(net, loss_fn, (x, y), tc, ckpt, desc=f"{PAPER} {name}", run_fingerprint=run_id)
        history, model, seconds = res.history, res.model, res.train_seconds
    except NonFiniteLossError as e:  # the high-lr arm without QK-norm may do this: a result, not a crash
        print(f"{name}: {e}", flush=True)
        last = common.training.list_checkpoints(ckpt)
        history = json.loads((last[-1] / "train_state.json").read_text())["history"] if last else []
        history = history + [{"step": len(history) + 1, "loss": float("nan"), "lr": tc.lr}]
        model, seconds, nonfinite = net, time.time() - t0, True
    gates.record(model)
    losses = [h["loss"] for h in history]
    row = {"comparison": arm.comparison, "arm": arm.role, "run": arm.name, "train_seed": seed, "lr": tc.lr,
           "steps": tc.steps, "seconds": seconds, "params": sum(p.numel() for p in model.parameters()),
           **stability_numbers(losses, tc.warmup_steps, cfg.stability, nonfinite),
           "gate_abs_mean": gates.records[-1]["mean"]}
    logit = max_logit(model, x, y, tok)
    row["max_logit"] = cfg.stability.logit_cap if not math.isfinite(logit) else min(logit, cfg.stability.logit_cap)
    meta = {"arm": arm.name, "in_channels": int(x.shape[1]), "train_seed": seed, "step": tc.steps,
            "nonfinite": nonfinite, "params": row["params"]}
    save_model(model, out_dir, meta)
    return {"row": row, "history": [{"step": h["step"], "loss": h["loss"]} for h in history],
            "gates": gates.records}


def max_logit(model, x, y, tok) -> float:
    try:
        return method.max_attention_logit(model.eval(), *probe_batch(x, y, tok))
    finally:
        model.train()


def main(argv=None):
    cfg = load_config(LuminaFlagDiTConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    runs, t0 = [], time.time()
    for seed in cfg.train_seeds:
        for arm in ARMS:
            run = train_run(cfg, arm, seed, x, y)
            runs.append(run)
            row = run["row"]
            log_run(cfg, PAPER, "train", {"arm": arm.name, "net": to_dict(cfg.net), "lr": row["lr"]},
                    {k: v for k, v in row.items() if isinstance(v, (int, float))}, seed=seed, history=run["history"])
            print(json.dumps(row), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "train.json") as tmp:
        tmp.write_text(json.dumps({"rows": [r["row"] for r in runs], "runs": runs, "train_seconds": time.time() - t0}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
