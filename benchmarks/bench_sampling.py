"""Sampling throughput: common.sampling.generate_all (DDIM) vs diffusers' DDIM on the same UNet.

Same network (root params.yaml `base_model`, random weights: speed does not depend on them),
same number of samples in one batch, same DDIM steps (eta = 0, x0 clipped, linspace timesteps),
guidance scale 1.0 (one network evaluation per step).

- conditional: the base model is class-conditional, and DDIMPipeline passes no class labels, so
  the reference is the plain diffusers loop: DDIMScheduler.set_timesteps, then per step
  unet(x, t, class_labels=y) and scheduler.step(...).
- unconditional: the same config with num_classes = 0, our sampler vs diffusers' DDIMPipeline.

Prints images/s and ratio = ours / diffusers (1.0 = no overhead from our sampler and hooks).
"""

from __future__ import annotations

import dataclasses
import sys

import torch
from _common import best_times, model_info, parse, report, setup


def add_args(p):
    p.add_argument("--samples", type=int, default=200, help="images per run (one batch)")
    p.add_argument("--nfe", type=int, default=20, help="DDIM steps")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per sampler, interleaved, after one warm-up; the best is kept")


def ours(s, unet, n: int, nfe: int):
    """A call of common.sampling.generate_all, as the evaluation stages sample."""
    from common.diffusion import NoiseSchedule, unet_fn
    from common.sampling import SamplingSpec, generate_all

    schedule = NoiseSchedule.from_config(s.bm.diffusion)
    spec = SamplingSpec(num_samples=n, nfe=nfe, method="ddim", guidance_scale=1.0)
    k = s.bm.unet.num_classes if unet.config.num_class_embeds else 0
    return lambda: generate_all(unet_fn(unet), schedule, spec, s.shape, k, batch_size=n)


def ddim_scheduler(s):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**dataclasses.asdict(s.bm.diffusion), timestep_spacing="linspace")


def diffusers_loop(s, unet, n: int, nfe: int):
    """The plain diffusers sampling loop with class labels (what DDIMPipeline does, plus labels)."""
    from common.sampling import balanced_labels

    scheduler = ddim_scheduler(s)
    labels = balanced_labels(n, s.bm.unet.num_classes)

    @torch.no_grad()
    def go():
        x = torch.randn((n, *s.shape), generator=torch.Generator().manual_seed(0))
        scheduler.set_timesteps(nfe)
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=labels).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x

    return go


def diffusers_pipeline(s, unet, n: int, nfe: int):
    """diffusers' DDIMPipeline (unconditional UNets only)."""
    from diffusers import DDIMPipeline

    pipe = DDIMPipeline(unet=unet, scheduler=ddim_scheduler(s))
    pipe.set_progress_bar_config(disable=True)
    return lambda: pipe(batch_size=n, generator=torch.Generator().manual_seed(0), eta=0.0,
                        num_inference_steps=nfe, output_type="pt")


def compare(s, unet, ref, args) -> dict:
    """images/s of our sampler and of `ref` on `unet`, and their ratio."""
    unet.eval().requires_grad_(False)
    fns = [make(s, unet, args.samples, args.nfe) for make in (ours, ref)]
    a, b = (args.samples / t for t in best_times(fns, args.repeats))
    return {"ours_images_per_s": a, "diffusers_images_per_s": b, "ratio_ours_over_diffusers": a / b}


def run(args) -> dict:
    s = setup(args)
    if args.quick:
        args.samples, args.nfe, args.repeats = 8, 2, 1
    cond = s.unet()
    result = {"model": model_info(s, cond), "samples": args.samples, "nfe": args.nfe, "guidance_scale": 1.0,
              "threads": torch.get_num_threads()}
    if s.bm.unet.num_classes:
        result["conditional_vs_diffusers_loop"] = compare(s, cond, diffusers_loop, args)
    result["unconditional_vs_DDIMPipeline"] = compare(s, s.unet(num_classes=0), diffusers_pipeline, args)
    return report("sampling throughput", result, args)


if __name__ == "__main__":
    run(parse(sys.modules[__name__]))
