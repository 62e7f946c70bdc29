"""FLOP utilization of a base-model training step against this machine's float32 matmul peak.

1. peak:  best GFLOP/s of torch.matmul on two N x N float32 matrices (2 N^3 FLOPs each).
2. count: FLOPs of one training step's forward + backward (common.diffusion.denoising_loss on
          the base model's UNet, one batch), counted by torch.utils.flop_counter.FlopCounterMode
          (matmuls, convolutions and attention; elementwise ops and norms count as 0).
3. time:  (a) forward + backward alone, best of several, i.e. exactly the counted work;
          (b) a full optimizer step of common.training.train (bench_training's measurement),
              which adds clipping, AdamW, EMA and the loop's own bookkeeping.
Prints achieved GFLOP/s = counted FLOPs / time and utilization = achieved / matmul peak.
"""

from __future__ import annotations

import sys

import torch
from _common import best_time, clone, model_info, parse, report, setup
from bench_training import time_ours
from torch.utils.flop_counter import FlopCounterMode


def add_args(p):
    p.add_argument("--matmul-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=5, help="timed forward+backward runs (best is kept)")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps of the training loop")


def matmul_peak_gflops(n: int, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: torch.matmul(a, b), repeats=repeats, warmup=3) / 1e9


def loss_closure(s, unet, data):
    """A callable computing one batch's training loss exactly as the training stage does."""
    from common.diffusion import NoiseSchedule, denoising_loss, unet_fn

    schedule = NoiseSchedule.from_config(s.bm.diffusion)
    k, x, y = s.bm.unet.num_classes, *data
    return lambda: denoising_loss(unet_fn(unet), schedule, x, y if k else None, torch.Generator().manual_seed(0),
                                  s.bm.train.cond_dropout, k)


def count_flops(loss_fn) -> dict:
    """FLOPs of the forward and of the backward pass of one loss evaluation."""
    with FlopCounterMode(display=False) as fwd:
        loss = loss_fn()
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    return {"forward": fwd.get_total_flops(), "backward": bwd.get_total_flops()}


def run(args) -> dict:
    s = setup(args)
    if args.quick:
        args.matmul_size, args.repeats, args.steps = 256, 1, 2
    B = s.bm.train.batch_size
    unet = s.unet().train()
    data = s.random_data(B)
    loss_fn = loss_closure(s, unet, data)

    peak = matmul_peak_gflops(args.matmul_size)
    flops = count_flops(loss_fn)
    total = flops["forward"] + flops["backward"]
    unet.zero_grad(set_to_none=True)
    t_fb = best_time(lambda: loss_fn().backward(), repeats=args.repeats, warmup=1)
    t_step = time_ours(s, clone(unet), s.random_data(max(4 * B, 512)), args.steps, warmup=2)["s_per_step"]

    def achieved(seconds):
        g = total / seconds / 1e9
        return {"seconds": seconds, "gflops": g, "utilization": g / peak}

    return report("FLOP utilization", {
        "model": model_info(s, unet), "batch_size": B, "threads": torch.get_num_threads(),
        "matmul_peak_gflops": peak, "matmul_size": args.matmul_size,
        "step_gflop": {k: v / 1e9 for k, v in flops.items()} | {"total": total / 1e9},
        "forward_backward": achieved(t_fb), "train_loop_step": achieved(t_step),
    }, args)


if __name__ == "__main__":
    run(parse(sys.modules[__name__]))
