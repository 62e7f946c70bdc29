"""Stage `evaluate`: FID of DDIM vs DDIM + residual correction at equal NFE, and the correction's size.

For every NFE and sampling seed, one DDIM run (per-sample seeded noise) with the method's sampler hook
(method.ResidualCorrection: x_tilde_0 = x_hat_0 + r_phi(x_hat_0, N) in the last step's x0) gives the
method's samples; the hook also keeps x_hat_0, which is exactly what the same run returns without the
hook (the last DDIM step returns its x0), so the baseline scores the very same samples uncorrected and
the arms differ only by the correction. The same correction is then applied, unchanged, to samples
of another diffusion model trained on the same data (`evaluate.transfer_model`: the paper's transfer
claim). Writes reports/residual_correction/results.json (DVC metrics) and sample grids.
"""

import time

import torch

from common.config import resolve
from common.data import to_uint8
from common.diffusion import ModelFn, unet_fn
from common.eval_stage import EvalStage, sampling_fields
from common.experiment import BaseModelExperiment
from common.models import load_diffusion_model
from common.sampling import SamplingSpec, generate_samples
from papers.residual_correction.config import ResidualCorrectionConfig
from papers.residual_correction.cost import size_ratio
from papers.residual_correction.method import ResidualCorrection, unet_correction
from papers.residual_correction.train import load_correction

PAPER = "residual_correction"


class BothArms(ResidualCorrection):
    """The method's hook, also keeping x_hat_0 (the baseline arm) and the seconds spent in r_phi."""

    def __init__(self, r, nfe: int):
        super().__init__(r, nfe)
        self.x_hat, self.seconds = None, 0.0

    def x0(self, x0, x, i, t):
        if i == self.nfe - 1:
            self.x_hat = x0.cpu()
        tic = time.perf_counter()
        out = super().x0(x0, x, i, t)
        self.seconds += time.perf_counter() - tic
        return out


def sample_both_arms(model_fn: ModelFn, schedule, spec: SamplingSpec, shape, num_classes: int, net) -> dict:
    """One sampler run with the correction hook: x_hat (baseline), x_tilde (method), labels, cost and times."""
    made = []

    def hooks():
        made.append(BothArms(unet_correction(net), spec.nfe))
        return made[-1]

    tic = time.perf_counter()
    s = generate_samples(model_fn, schedule, spec, shape, num_classes, hooks_factory=hooks, progress=True)
    seconds = time.perf_counter() - tic
    t_correction = sum(h.seconds for h in made)
    return {"x_hat": torch.cat([h.x_hat for h in made]), "x_tilde": s.images, "labels": s.labels,
            "model_calls": s.model_calls, "t_sampler": seconds - t_correction, "t_correction": t_correction}


def main(argv=None):
    st = EvalStage.load(ResidualCorrectionConfig, PAPER, argv)
    cfg = st.cfg
    exp = BaseModelExperiment(cfg)
    net = load_correction(resolve(cfg, cfg.paths.runs, PAPER, "correction"))
    sp, ev = cfg.sampler, cfg.evaluate
    calls_per_step = 2 if sp.guidance_scale != 1.0 and exp.num_classes else 1

    def run(unet, schedule, group, nfe, seed):
        spec = SamplingSpec(ev.num_samples, nfe, "ddim", spacing=sp.spacing, guidance_scale=sp.guidance_scale,
                            seed=seed, clip_x0=sp.clip_x0)
        arms = sample_both_arms(unet_fn(unet), schedule, spec, exp.shape, exp.num_classes, net)
        x_hat, x_tilde, y = arms["x_hat"], arms["x_tilde"], arms["labels"]
        t_sampler, t_correction = arms["t_sampler"], arms["t_correction"]
        exp.model_calls += arms["model_calls"]
        key = dict(group=group, nfe=nfe, seed=seed)
        img_b, img_m = to_uint8(x_hat), to_uint8(x_tilde)
        st.add(stage="compare", **key, arm="baseline", seconds=t_sampler, **exp.score(img_b, y))
        st.add(stage="compare", **key, arm="method", seconds=t_sampler + t_correction,
               correction_msq=float(((x_tilde - x_hat) ** 2).mean()), **exp.score(img_m, y))
        st.add(stage="overhead", **key, overhead=t_correction / t_sampler)
        if seed == ev.seeds[0]:
            st.save_grid(img_b, f"{group}_nfe{nfe}_baseline")
            st.save_grid(img_m, f"{group}_nfe{nfe}_method")

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
        st.add(stage="cost", seed=seed, params_ratio=size.params_ratio, flops_ratio=size.flops_ratio)

    st.write(**sampling_fields(cfg, exp, ev.num_samples), size=size.to_dict(),
             sampling_overhead_flops={str(n): size.sampling_overhead(n, calls_per_step) for n in ev.nfe},
             transfer_model_step=transfer_step)
    print(f"{exp.model_calls} model calls in {st.seconds:.0f} s; size {size.to_dict()}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
