"""Untried speed levers on the base UNet: channels-last memory, torch.compile, inference mode.

The verdict issue asked to make the code faster before cutting work: this script measures what
each lever buys on this machine, each against plain eager float32 in the same process
(interleaved, best of `--repeats`), and prints ratios (lever / eager; > 1 means faster).

- training step: forward + backward + AdamW on a batch of the base model's training size
  (eager; channels-last weights and inputs; torch.compile of the UNet, default inductor backend).
- sampling call: one UNet evaluation on a batch of `--samples` images, as the sampler makes it
  (torch.no_grad, the sampler's torch.inference_mode, channels-last, torch.compile).

torch.compile's one-off compilation time is reported on its own (`train_compile_s`, `sample_compile_s`): on 2 cores it is
paid once per process, i.e. per stage, so it has to be amortised over the stage's steps.
"""

from __future__ import annotations

import sys
import time

import torch
from _common import best_times, clone, model_info, parse, report, setup


def add_args(p):
    p.add_argument("--batch", type=int, default=None, help="training batch (default: base_model.train.batch_size)")
    p.add_argument("--samples", type=int, default=200, help="images per sampling call")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant, interleaved; the best is kept")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")


def train_step(unet, x, t, y, memory_format=torch.contiguous_format):
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    x = x.contiguous(memory_format=memory_format)

    def step():
        loss = torch.nn.functional.mse_loss(unet(x, t, class_labels=y).sample, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sample_call(unet, x, t, y, context, memory_format=torch.contiguous_format):
    x = x.contiguous(memory_format=memory_format)

    def call():
        with context():
            return unet(x, t, class_labels=y).sample

    return call


def timed_compile(unet, warm):
    """torch.compile(unet) and the wall time of its first call (the compilation)."""
    compiled = torch.compile(unet)
    t0 = time.perf_counter()
    warm(compiled)
    return compiled, time.perf_counter() - t0


def run(args) -> dict:
    s = setup(args)
    if args.quick:
        args.samples, args.repeats, args.batch = 4, 1, 4
    base = s.unet()
    n = args.batch or s.bm.train.batch_size
    x, y = s.random_data(max(n, args.samples))
    t = torch.randint(0, s.bm.diffusion.num_train_timesteps, (len(x),), generator=torch.Generator().manual_seed(0))
    cl = torch.channels_last
    result = {"model": model_info(s, base), "train_batch": n, "samples": args.samples, "threads": torch.get_num_threads()}

    # training: each variant gets its own copy of the same initial weights
    xt, tt, yt = x[:n], t[:n], y[:n]
    variants = {"eager": train_step(clone(base).train(), xt, tt, yt),
                "channels_last": train_step(clone(base).train().to(memory_format=cl), xt, tt, yt, cl)}
    if not args.no_compile:
        compiled, secs = timed_compile(clone(base).train(), lambda m: train_step(m, xt, tt, yt)())
        variants["compile"] = train_step(compiled, xt, tt, yt)
        result["train_compile_s"] = secs
    times = dict(zip(variants, best_times(list(variants.values()), args.repeats)))
    result["train_step_s"] = times
    result["train_speedup_vs_eager"] = {k: times["eager"] / v for k, v in times.items() if k != "eager"}

    # sampling: one network evaluation of the sampler's batch
    m = args.samples
    xs, ts, ys = x[:m], t[:m], y[:m]
    frozen = clone(base).eval().requires_grad_(False)
    variants = {"no_grad": sample_call(frozen, xs, ts, ys, torch.no_grad),
                "inference_mode": sample_call(frozen, xs, ts, ys, torch.inference_mode),
                "channels_last": sample_call(clone(frozen).to(memory_format=cl), xs, ts, ys, torch.inference_mode, cl)}
    if not args.no_compile:
        compiled, secs = timed_compile(clone(frozen), lambda mod: sample_call(mod, xs, ts, ys, torch.no_grad)())
        variants["compile"] = sample_call(compiled, xs, ts, ys, torch.no_grad)
        result["sample_compile_s"] = secs
    times = dict(zip(variants, best_times(list(variants.values()), args.repeats)))
    result["sample_call_s"] = times
    result["sample_speedup_vs_no_grad"] = {k: times["no_grad"] / v for k, v in times.items() if k != "no_grad"}
    return report("speed levers (ratio > 1: faster than plain eager)", result, args)


if __name__ == "__main__":
    run(parse(sys.modules[__name__]))
