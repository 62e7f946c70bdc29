"""Stage `evaluate`: optimise the sampling schedule of the shared base model (AYS), then compare it with
hand-crafted schedules at equal NFE.

1. Coarse stage: a `optimize.num_steps`-step schedule from `optimize.init`, Algorithm 1 passes with
   early stopping on the FID of a validation sample set (its own seed), then `refine_rounds`
   subdivisions with only the new points refined (Sec. 3.3, App. B.1).
2. AYS at each compared NFE: the stage with that many steps, else log-linear interpolation of the
   finest one. Baselines: time-uniform, EDM (rho = 7), log-SNR-uniform between the model's sigma_min
   and sigma_max. All schedules run on the same DDIM with the last level set to 0 and the same
   per-sample noise, on seeds disjoint from the early-stopping seed; the KLUB of every compared
   schedule is estimated on shared Monte Carlo numbers for the report.
Writes reports/align_your_steps/results.json (DVC metrics) and sample grids.
"""

import time

import numpy as np
import torch

from common.config import resolve
from common.data import balanced_subset, load_split, to_model_range
from common.diffusion import unet_fn
from common.eval_stage import EvalStage, sampling_fields
from common.experiment import BaseModelExperiment
from common.sampling import SamplingSpec
from papers.align_your_steps import method as ays
from papers.align_your_steps.config import AlignYourStepsConfig

PAPER = "align_your_steps"


def main(argv=None):
    st = EvalStage.load(AlignYourStepsConfig, PAPER, argv)
    cfg = st.cfg
    exp = BaseModelExperiment(cfg)
    s, o, es, cp = cfg.sampler, cfg.optimize, cfg.early_stopping, cfg.compare
    table = ays.ddpm_sigmas(exp.schedule.alphas_cumprod)  # the model's 1000 noise levels, ascending
    fid_key = exp.scorer.key("fid")

    def run(sigmas, seed, n):
        ts = ays.schedule_timesteps(sigmas, table)
        spec = SamplingSpec(n, len(ts), "ddim", s.eta, guidance_scale=s.guidance_scale, seed=seed, clip_x0=s.clip_x0,
                            timesteps=ts)
        img, y, seconds = exp.sample(spec, progress=False)
        return img, y, ts, seconds

    # 1. the KLUB's data: a class-balanced subset of the training images (with their labels when the
    #    model is conditional: the denoiser is the conditional one the samples are drawn with)
    x_train, y_train = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    idx = balanced_subset(y_train, o.num_data, int(y_train.max()) + 1, o.seed)
    data = (to_model_range(x_train[idx]), y_train[idx] if exp.num_classes else None)
    denoiser = ays.Denoiser(unet_fn(exp.unet), exp.schedule.alphas_cumprod)
    gen = torch.Generator().manual_seed(o.seed)

    def proxy(sigmas):
        img, y, ts, _ = run(sigmas, es.seed, es.num_samples)
        value = exp.score(img, y)[fid_key]
        st.log(stage="early_stopping", timesteps=ts, **{fid_key: value})
        return value

    t0 = time.time()
    init = ays.baseline(o.init, o.num_steps, table, cp.edm_rho)
    stages, history = ays.align_your_steps(
        denoiser, data, init, o.max_sweeps, o.num_draws, gen, proxy=proxy if es.enabled else None,
        patience=es.patience, refine_rounds=o.refine_rounds, refine_sweeps=o.refine_sweeps,
        num_candidates=o.num_candidates, reach=o.reach, grid=table, c=o.c)
    optimize_seconds = time.time() - t0
    optimize_calls = denoiser.calls + (exp.model_calls if es.enabled else 0)

    # KLUB of each coarse pass on one shared set of Monte Carlo numbers (so passes are comparable)
    track = torch.Generator().manual_seed(o.seed + 1)
    pick = torch.randint(0, o.num_data, (cp.klub_draws,), generator=track)
    batch = ays.KLUBBatch(data[0][pick], None if data[1] is None else data[1][pick], track)
    klub, se = ays.estimate_klub(denoiser, batch, [np.asarray(h["sigmas"])[::-1] for h in history], o.c)
    for h, k, e in zip(history, klub, se):
        h.update(klub=float(k), klub_se=float(e), timesteps=ays.schedule_timesteps(h["sigmas"], table))

    # 2. the compared schedules
    steps = {len(sig) - 1: sig for sig in stages}
    finest = stages[-1]
    schedules = {}
    for nfe in cp.nfe:
        schedules[nfe] = {"ays": steps.get(nfe, ays.loglinear_interp(finest, nfe))}
        for name in cp.baselines:
            schedules[nfe][name] = ays.baseline(name, nfe, table, cp.edm_rho)
    klubs = {}
    for nfe, group in schedules.items():
        names = list(group)
        k, e = ays.estimate_klub(denoiser, batch, [group[n][::-1] for n in names], o.c)
        klubs[nfe] = {n: {"klub": float(a), "klub_se": float(b)} for n, a, b in zip(names, k, e)}

    for nfe in cp.nfe:
        for seed in cp.seeds:
            for name, sigmas in schedules[nfe].items():
                img, y, ts, seconds = run(sigmas, seed, cp.num_samples)
                row = dict(stage="compare", nfe=nfe, seed=seed, schedule=name, seconds=seconds, **exp.score(img, y))
                if name == "ays":  # the method row is paired with every baseline: one copy per group
                    for b in cp.baselines:
                        st.add(**row, arm="method", group=b)
                else:
                    st.add(**row, arm="baseline", group=name)
                if seed == cp.seeds[0]:
                    st.save_grid(img, f"nfe{nfe}_{name}")

    fields = sampling_fields(cfg, exp, cp.num_samples)
    fields["model_calls"] += denoiser.calls  # the sample sets' and the KLUB estimates'
    stage_info = [{"num_steps": len(sig) - 1, "sigmas": sig.tolist(), "timesteps": ays.schedule_timesteps(sig, table)}
                  for sig in stages]
    st.write(**fields, sigma_min=float(table[0]), sigma_max=float(table[-1]), stages=stage_info, history=history,
             schedules={str(nfe): {n: {"sigmas": v.tolist(), "timesteps": ays.schedule_timesteps(v, table),
                                       **klubs[nfe][n]} for n, v in group.items()}
                        for nfe, group in schedules.items()},
             optimize_seconds=optimize_seconds, optimize_calls=optimize_calls, klub_calls=denoiser.calls)
    print(f"AYS {o.num_steps}-step timesteps {stage_info[0]['timesteps']}; "
          f"{fields['model_calls']} model calls in {st.seconds:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
