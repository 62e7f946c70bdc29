"""Stage `evaluate`: base samplers with and without SingDiffusion's first step, on the shared base model.

For every grid (`compare`: plain conditional sampling; `guided`: classifier-free guidance s > 1),
sampler (DDIM, DPM-Solver++(2M): the shared sampler's rules), timestep spacing, NFE and seed, two arms
start from the same per-sample x_1: `baseline` (the sampler from x_1) and `method` (the sampler from
x_{t0} = sqrt(ab_{t0}) ybar + sqrt(1 - ab_{t0}) x_1, SingDiffusion's start hook). Each run is scored
with FID & co. in the metric backbone's feature space and by its per-sample mean brightness against the
held-out data's: Wasserstein-1 distance between the two brightness distributions and the gap of their
means.
Also records how far N(0, I) is from the true marginal at each t0 (method.start_gap_nats).
Writes reports/sing_diffusion/results.json (DVC metrics), brightness arrays and sample grids.
"""

import numpy as np
import torch
from scipy.stats import wasserstein_distance

from common.config import resolve
from common.data import load_split, to_model_range
from common.diffusion import NoiseSchedule
from common.eval_stage import EvalStage, sampling_fields
from common.experiment import BaseModelExperiment, real_subset
from common.report import class_grid
from common.sampling import Hooks, SamplingSpec, timesteps
from papers.sing_diffusion.config import SingDiffusionConfig
from papers.sing_diffusion.method import SingDiffusionStart, start_gap_nats
from papers.sing_diffusion.train import load_net

PAPER = "sing_diffusion"
SD15 = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def brightness(images_uint8: torch.Tensor) -> np.ndarray:
    """Per-sample mean brightness in [0, 255] (the paper's 'average brightness')."""
    return images_uint8.double().mean(dim=(1, 2, 3)).numpy()


def brightness_metrics(b: np.ndarray, b_data: np.ndarray) -> dict:
    return {"brightness_mean": float(b.mean()), "brightness_w1": float(wasserstein_distance(b, b_data)),
            "brightness_gap": float(abs(b.mean() - b_data.mean()))}


def main(argv=None):
    st = EvalStage.load(SingDiffusionConfig, PAPER, argv)
    cfg = st.cfg
    exp = BaseModelExperiment(cfg)
    net = load_net(resolve(cfg, cfg.paths.runs, PAPER, "net"))
    x_ho, y_ho = load_split(resolve(cfg, cfg.paths.data, "prepared"), "heldout")
    b_data = brightness(x_ho)
    x_train, _ = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")

    arrays, class_brightness = {"data": b_data}, {}
    hist = cfg.histogram
    grids = {"compare": cfg.compare, "guided": cfg.guided if exp.num_classes else None}
    for stage, grid in grids.items():
        if grid is None:
            continue
        g = grid.guidance_scale
        arms = {"baseline": Hooks,
                "method": lambda g=g: SingDiffusionStart(net, exp.schedule, g, cfg.normalize_guidance)}
        for sampler in grid.samplers:
            for spacing in grid.spacings:
                for nfe in grid.nfe:
                    t0 = timesteps(nfe, exp.schedule.T, spacing)[0]
                    for seed in cfg.seeds:
                        spec = SamplingSpec(cfg.num_samples, nfe, sampler, spacing=spacing, guidance_scale=g,
                                            seed=seed, clip_x0=cfg.clip_x0)
                        for arm, hooks in arms.items():
                            img, y, seconds = exp.sample(spec, hooks, progress=False)
                            b = brightness(img)
                            st.add(stage=stage, sampler=sampler, spacing=spacing, nfe=nfe, guidance=g, t0=t0,
                                   seed=seed, arm=arm, seconds=seconds, **exp.score(img, y),
                                   **brightness_metrics(b, b_data))
                            name = f"{stage}_{sampler}_{spacing}_nfe{nfe}_{arm}"
                            if seed == cfg.seeds[0]:
                                arrays[name] = b
                                st.save_grid(class_grid(img, y) if exp.num_classes else img, name)
                            if stage == "compare" and (sampler, spacing, nfe) == (hist.sampler, hist.spacing, hist.nfe):
                                per_class = [float(b[(y == c).numpy()].mean()) for c in range(max(exp.num_classes, 1))]
                                class_brightness.setdefault(arm, []).append(per_class)

    starts = sorted({(sp, n) for grid in grids.values() if grid is not None for sp in grid.spacings
                     for n in grid.nfe})
    x0 = to_model_range(x_train)
    gap = []
    for spacing, nfe in starts:
        t0 = timesteps(nfe, exp.schedule.T, spacing)[0]
        ab = float(exp.schedule.alpha_bar(t0))
        gap.append({"spacing": spacing, "nfe": nfe, "t0": t0, "ab_t0": ab, "signal_scale": ab ** 0.5,
                    "kl_bound_nats": float(start_gap_nats(x0, ab))})
    sd = NoiseSchedule(**SD15)
    sd_ref = {"ab_999": float(sd.alpha_bar(999)), "ab_981": float(sd.alpha_bar(981)),
              "latent_dim": 4 * 64 * 64}
    ab_last = float(exp.schedule.alpha_bar(exp.schedule.T - 1))
    data_classes = [float(b_data[(y_ho == c).numpy()].mean()) for c in range(max(exp.num_classes, 1))]
    # the metrics' resolution at the compared sets' size: FID & co. (exp.real_floor) and the brightness
    # distances, all of the same class-balanced set of real training images
    fields = sampling_fields(cfg, exp, cfg.num_samples)
    x_real, _ = real_subset(exp.data_dir, cfg.num_samples, exp.num_classes, cfg.seed)
    fields["floors"].update({k: v for k, v in brightness_metrics(brightness(x_real), b_data).items()
                             if k != "brightness_mean"})
    st.write_arrays("samples/brightness.npz", **{k: v.astype(np.float32) for k, v in arrays.items()})
    st.write(**fields, start_gap=gap, sd15_reference=sd_ref, ab_last=ab_last,
             data_brightness_mean=float(b_data.mean()),
             class_brightness={"data": data_classes,
                               **{arm: np.mean(v, axis=0).tolist() for arm, v in class_brightness.items()}},
             net_params=sum(p.numel() for p in net.parameters()))
    print(f"{exp.model_calls} model calls in {st.seconds:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
