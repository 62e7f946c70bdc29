"""Stage `evaluate`: FID of DDIM/DDPM vs their Time-Shift versions on the shared base model.

1. Sweep (window, cutoff) for TS-DDIM at `sweep.nfe` on the sweep seeds; keep the argmin of FID.
2. On disjoint seeds: baseline vs TS for each sampler and NFE, paired per-sample noise, recording
   wall time (the overhead claim) and the shifted timesteps TS chose.
Writes reports/time_shift/results.json (DVC metrics) and sample grids.
"""

import numpy as np

from common.eval_stage import EvalStage, sampling_fields
from common.experiment import BaseModelExperiment
from common.sampling import Hooks, SamplingSpec
from papers.time_shift.config import TimeShiftConfig
from papers.time_shift.method import TimeShift

PAPER = "time_shift"


def main(argv=None):
    st = EvalStage.load(TimeShiftConfig, PAPER, argv)
    cfg = st.cfg
    exp = BaseModelExperiment(cfg)
    shifts = {}

    def run(sampler, nfe, seed, n, window=None, cutoff=None):
        spec = SamplingSpec(n, nfe, sampler, spacing=cfg.spacing, guidance_scale=cfg.guidance_scale, seed=seed,
                            clip_x0=cfg.clip_x0)
        made = []  # the hooks of each batch chunk, to read back the timesteps they chose

        def time_shift():
            made.append(TimeShift(exp.schedule, window, cutoff))
            return made[-1]

        img, y, seconds = exp.sample(spec, Hooks if window is None else time_shift)
        return img, y, seconds, (made[0].chosen if made else [])

    sw = cfg.sweep
    for seed in sw.seeds:
        for w in sw.window:
            for c in sw.cutoff:
                img, y, _, _ = run(sw.sampler, sw.nfe, seed, sw.num_samples, w, c)
                st.add(stage="sweep", sampler=sw.sampler, nfe=sw.nfe, seed=seed, window=w, cutoff=c,
                       **exp.score(img, y))
    fid = exp.scorer.key("fid")
    sweep_mean = {(w, c): float(np.mean([r[fid] for r in st.rows if r["stage"] == "sweep" and r["window"] == w
                                         and r["cutoff"] == c])) for w in sw.window for c in sw.cutoff}
    w_star, c_star = min(sweep_mean, key=sweep_mean.get)
    cp = cfg.compare
    window = cp.window if cp.window is not None else w_star
    cutoff = cp.cutoff if cp.cutoff is not None else c_star

    for sampler in cp.samplers:
        for nfe in cp.nfe:
            for seed in cp.seeds:
                secs = {}
                arms = (("baseline", None, None, None), ("method", "tuned", window, cutoff),
                        ("method", "paper", cp.paper_window, cp.paper_cutoff))
                for arm, group, w, c in arms:
                    name = group or "baseline"
                    img, y, secs[name], chosen = run(sampler, nfe, seed, cp.num_samples, w, c)
                    row = dict(stage="compare", sampler=sampler, nfe=nfe, seed=seed, arm=arm, seconds=secs[name],
                               **exp.score(img, y))
                    # the baseline row is paired with each TS setting: one copy per group
                    for g in (group,) if group else ("tuned", "paper"):
                        st.add(**row, group=g)
                    if seed == cp.seeds[0]:
                        st.save_grid(img, f"{sampler}_nfe{nfe}_{name}")
                        if group:  # t_s chosen per step (first batch of this seed)
                            shifts[f"{sampler}_nfe{nfe}_{group}"] = [
                                {"nominal": int(t), "mean": float(ts.float().mean()), "min": int(ts.min()),
                                 "max": int(ts.max())} for t, ts in chosen]
                for group in ("tuned", "paper"):
                    st.add(stage="overhead", sampler=sampler, nfe=nfe, seed=seed, group=group,
                           overhead=secs[group] / secs["baseline"] - 1)

    st.write(**sampling_fields(cfg, exp, cp.num_samples), window=window, cutoff=cutoff,
             paper_window=cp.paper_window, paper_cutoff=cp.paper_cutoff,
             sweep_mean_fid={f"{w},{c}": v for (w, c), v in sweep_mean.items()}, shifts=shifts)
    print(f"window={window} cutoff={cutoff}; {exp.model_calls} model calls in {st.seconds:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
