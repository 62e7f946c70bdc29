"""Stage `evaluate`: FID of DDIM vs DDIM + residual correction at equal NFE, and the correction's size.

For every NFE and sampling seed, one DDIM run (per-sample seeded noise) gives x_hat_0; the baseline
scores x_hat_0, the method scores x_tilde_0 = x_hat_0 + r_phi(x_hat_0, N) on the very same samples
(applying r_phi after the sampler equals applying it in the last step's x0, see the tests), so
the arms differ only by the correction. The same correction is then applied, unchanged, to samples
of another diffusion model trained on the same data (`evaluate.transfer_model`: the paper's transfer
claim). Writes reports/residual_correction/results.json (DVC metrics) and sample grids.
"""

import json
import sys
import time

import torch

from common.config import load_config, resolve
from common.data import to_uint8
from common.diffusion import unet_fn
from common.experiment import BaseModelExperiment
from common.models import load_diffusion_model
from common.report import save_grid
from common.sampling import SamplingSpec, generate_all
from common.seeding import seed_everything
from papers.residual_correction.config import ResidualCorrectionConfig
from papers.residual_correction.cost import size_ratio
from papers.residual_correction.train import apply_correction, load_correction

PAPER = "residual_correction"


def main(argv=None):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    t0 = time.time()
    exp = BaseModelExperiment(cfg)
    net = load_correction(resolve(cfg, cfg.paths.runs, PAPER, "correction"))
    out = resolve(cfg, cfg.paths.reports, PAPER)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    sp, ev = cfg.sampler, cfg.evaluate
    calls_per_step = 2 if sp.guidance_scale != 1.0 and exp.num_classes else 1
    rows = []

    def run(unet, schedule, group, nfe, seed):
        spec = SamplingSpec(ev.num_samples, nfe, "ddim", spacing=sp.spacing, guidance_scale=sp.guidance_scale,
                            seed=seed, clip_x0=sp.clip_x0)
        tic = time.perf_counter()
        x_hat, y = generate_all(unet_fn(unet), schedule, spec, exp.shape, exp.num_classes, progress=True)
        t_sampler = time.perf_counter() - tic
        exp.model_calls += spec.num_samples * nfe * calls_per_step
        tic = time.perf_counter()
        x_tilde = apply_correction(net, x_hat, nfe)
        t_correction = time.perf_counter() - tic
        key = {"stage": "compare", "group": group, "nfe": nfe, "seed": seed}
        img_b, img_m = to_uint8(x_hat), to_uint8(x_tilde)
        rows.append({**key, "arm": "baseline", "seconds": t_sampler, **exp.score(img_b, y)})
        rows.append({**key, "arm": "method", "seconds": t_sampler + t_correction,
                     "correction_msq": float(((x_tilde - x_hat) ** 2).mean()), **exp.score(img_m, y)})
        rows.append({"stage": "overhead", "group": group, "nfe": nfe, "seed": seed,
                     "overhead": t_correction / t_sampler})
        if seed == ev.seeds[0]:
            save_grid(img_b[:100], out / "samples" / f"{group}_nfe{nfe}_baseline.png")
            save_grid(img_m[:100], out / "samples" / f"{group}_nfe{nfe}_method.png")
        print(json.dumps(rows[-2]), flush=True)

    for nfe in ev.nfe:
        for seed in ev.seeds:
            run(exp.unet, exp.schedule, "base", nfe, seed)
    transfer_step = None
    if ev.transfer_model:
        other, other_schedule, other_meta = load_diffusion_model(resolve(cfg, cfg.paths.models, ev.transfer_model))
        transfer_step = other_meta["step"]
        for nfe in ev.transfer_nfe:
            for seed in ev.seeds:
                run(other, other_schedule, "transfer", nfe, seed)

    # size of r_phi relative to the base network: parameters and FLOPs of one call on one sample
    x1 = torch.zeros(1, *exp.shape)
    c1 = torch.zeros(1, dtype=torch.long) if exp.num_classes else None
    size = size_ratio(exp.unet, lambda: exp.unet(x1, torch.tensor([500]), class_labels=c1), net,
                      lambda: net(x1, torch.tensor([min(ev.nfe)])))
    for seed in ev.seeds:  # deterministic; one row per seed so the `bound` claims see every seed
        rows.append({"stage": "cost", "seed": seed, "params_ratio": size.params_ratio, "flops_ratio": size.flops_ratio})

    floors = exp.real_floor(cfg, ev.num_samples)  # the metric's resolution at the compared sets' size
    results = {"metric": exp.scorer.key("fid"), "floors": floors, "floor_samples": ev.num_samples,
               "backbone": exp.scorer.backbone,
               "num_reference": exp.scorer.num_reference, "rows": rows, "size": size.to_dict(),
               "sampling_overhead_flops": {str(n): size.sampling_overhead(n, calls_per_step) for n in ev.nfe},
               "model_calls": exp.model_calls, "eval_seconds": time.time() - t0, "base_model_step": exp.meta["step"],
               "transfer_model_step": transfer_step}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{exp.model_calls} model calls in {time.time() - t0:.0f} s; size {size.to_dict()}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
