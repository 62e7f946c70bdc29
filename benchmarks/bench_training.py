"""Training throughput: the repo's loop (common.training.train) vs a plain diffusers-example loop.

Both train the base model's UNet (root params.yaml `base_model`, same initial weights, same
batch size, AdamW + LR scheduler + grad clipping + EMA) on random data of the training shape.
They run in alternating rounds (ours, plain, ours, plain) and the best round of each is kept,
so a burst of load from another process hits both sides rather than one.

- ours:  `common.training.train` with `common.diffusion.denoising_loss`, as the root stage
         `train_base_model` calls it (Accelerate, per-step seeded batches and noise, loss
         finiteness check, condition dropout). Steps are timed from inside the loss function,
         so setup and the final checkpoint (checkpoint_every is set past the end) are outside
         the timed window; they are reported separately.
- plain: the loop of diffusers' examples/unconditional_image_generation/train_unconditional.py
         without Accelerate: DDPMScheduler.add_noise, UNet forward, MSE, backward, clip,
         AdamW step, LR scheduler step, EMAModel.step, loss.item().

Prints samples/s of both and ratio = ours / plain (1.0 = no overhead from our loop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import clone, model_info, parse, report, setup


def add_args(p):
    p.add_argument("--steps", type=int, default=10, help="timed optimizer steps per round")
    p.add_argument("--rounds", type=int, default=2, help="ours, plain, ours, plain, ...: the best round of each is kept")
    p.add_argument("--warmup", type=int, default=3, help="untimed optimizer steps first")


def time_ours(s, unet, data, steps: int, warmup: int) -> dict:
    """Seconds per optimizer step of common.training.train, plus its setup and after-loop time."""
    from common.diffusion import NoiseSchedule, denoising_loss, unet_fn
    from common.training import train

    tc = dataclasses.replace(s.bm.train, steps=warmup + steps + 1, checkpoint_every=10**9, log_every=10**9)
    schedule = NoiseSchedule.from_config(s.bm.diffusion)
    k = s.bm.unet.num_classes
    stamps = []  # start of every micro-step

    def loss_fn(model, xb, yb, gen):
        stamps.append(time.perf_counter())
        return denoising_loss(unet_fn(model), schedule, xb, yb if k else None, gen, tc.cond_dropout, k)

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # the loop's progress bar
            train(unet, loss_fn, data, tc, Path(d) / "checkpoints", desc="bench")
        t_end = time.perf_counter()
    starts = stamps[:: tc.grad_accum]  # start of every optimizer step
    per_step = (starts[warmup + steps] - starts[warmup]) / steps
    return {"s_per_step": per_step, "setup_s": starts[0] - t0,
            "after_loop_s": t_end - starts[-1] - per_step}  # final checkpoint + EMA copy


def time_plain(s, unet, data, steps: int, warmup: int) -> dict:
    """Seconds per optimizer step of a diffusers-example-style loop on the same network."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    tc, B = s.bm.train, s.bm.train.batch_size
    noise_scheduler = DDPMScheduler(**dataclasses.asdict(s.bm.diffusion))
    opt = torch.optim.AdamW(unet.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    lr_scheduler = get_scheduler(tc.lr_schedule, opt, num_warmup_steps=tc.warmup_steps,
                                 num_training_steps=warmup + steps)
    ema = EMAModel(unet.parameters(), decay=tc.ema_decay)
    x, y = data
    labels_on = s.bm.unet.num_classes > 0
    unet.train()

    def step():
        idx = torch.randint(0, len(x), (B,))
        clean, labels = x[idx], y[idx]
        noise = torch.randn_like(clean)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (B,))
        noisy = noise_scheduler.add_noise(clean, noise, t)
        pred = unet(noisy, t, class_labels=labels if labels_on else None).sample
        loss = F.mse_loss(pred, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), tc.grad_clip)
        opt.step()
        lr_scheduler.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        loss.detach().item()  # the example logs the loss every step

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return {"s_per_step": (time.perf_counter() - t0) / steps}


def run(args) -> dict:
    s = setup(args)
    if args.quick:
        args.steps, args.warmup, args.rounds = 2, 1, 1
    B = s.bm.train.batch_size
    unet = s.unet()
    data = s.random_data(max(4 * B, 512))
    rounds = [(time_ours(s, clone(unet), data, args.steps, args.warmup),
               time_plain(s, clone(unet), data, args.steps, args.warmup)) for _ in range(args.rounds)]
    ours, plain = (min(r, key=lambda d: d["s_per_step"]) for r in zip(*rounds))
    for r in (ours, plain):
        r["samples_per_s"] = B / r["s_per_step"]
    return report("training throughput", {
        "model": model_info(s, unet), "batch_size": B, "steps": args.steps, "warmup": args.warmup,
        "rounds": args.rounds,
        "ours": ours, "plain_diffusers": plain,
        "ratio_ours_over_plain": ours["samples_per_s"] / plain["samples_per_s"],
        "threads": torch.get_num_threads(),
    }, args)


if __name__ == "__main__":
    run(parse(sys.modules[__name__]))
