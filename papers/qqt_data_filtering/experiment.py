"""Stage `experiment`: quality buckets, per-bucket scaling-law fits, and the top-p mixes at several budgets.

1. Buckets (paper Sec. 4, T-MARS buckets of DataComp medium). The pool is sorted by the shared teacher's
   CLIP score (`models/scene_clip/pool_scores.npy`) and its top n_buckets x S pairs are cut into buckets
   of S (bucket 1 = best); the ground-truth clean share of each is recorded.
2. Observations for the fits. Per seed, one CLIP per bucket trained on that bucket alone, evaluated
   after each pass in `study.fit_passes`; error = 1 - `study.metric`.
3. Fits. Per seed, (b, tau) per bucket by the seeded official grid search with (a, d) shared
   (method.fit_pools).
4. Mixes. Per seed, one CLIP per p = 1..n_buckets trained on the union of the top-p buckets, evaluated
   at each budget of `study.budgets` (constant learning rate after warm-up, so the evaluation at n
   samples is the state of a run of n samples: the trajectories share their prefix). Observed error
   per (p, budget) vs the error Eq. 5 predicts from the fitted (b_i, tau_i).
   The p = 1 mix is bucket 1 alone, so bucket 1's fit observations are that run's first passes.
Writes reports/qqt_data_filtering/results.json (rows with `seed` for the claims); runs are cached and
resumable under runs/qqt_data_filtering/.
"""

import json
import sys
import time

import numpy as np

from common.atomic import atomic_file
from common.clip import build_tokenizer, encode_images, retrieval, zero_shot
from common.clip_runs import run_clip
from common.config import load_config, resolve, to_dict
from common.scenes import NOISE_KINDS, Scenes, load_full_pool, load_scenes
from common.teacher import teacher_scores
from papers.qqt_data_filtering import method
from papers.qqt_data_filtering.config import QQTConfig

PAPER = "qqt_data_filtering"


def light_evaluate(with_retrieval: bool):
    """The score card without the linear probe (not used by the fits): zero-shot (+ retrieval)."""

    def evaluate(model, tok, probe_train: Scenes, test: Scenes, context_length: int) -> dict:
        feats = encode_images(model, test.images)
        out = zero_shot(model, tok, test, context_length, feats)
        if with_retrieval:
            out.update(retrieval(model, tok, test, context_length, feats))
        out["zero_shot_mean"] = float(np.mean([out["zero_shot_digit"], out["zero_shot_colour"], out["zero_shot_count"]]))
        return out

    return evaluate


def load_inputs(cfg):
    """(pool, probe_train, test, pool scores). cpu / tiny: the root `scenes` pool and the teacher's scores; full:
    the DataComp shards at `pool` with each pair's score from its .json (common.scenes.load_full_pool). The
    evaluation splits are the shared scenes' on every profile."""
    data_dir = resolve(cfg, cfg.paths.data, "scenes")
    web = load_full_pool(cfg, PAPER, "pool", needs="DataComp medium webdataset shards whose .json carry each pair's "
                         "T-MARS score as `score` (else DataComp's clip_l14_similarity_score ranks)", scored=True)
    probe, test = load_scenes(data_dir, "probe_train"), load_scenes(data_dir, "test")
    if web is not None:
        return web[0], probe, test, web[1]
    pool = load_scenes(data_dir, "pool")
    return pool, probe, test, teacher_scores(cfg, len(pool))


def bucket_table(pool: Scenes, scores: np.ndarray, buckets) -> list:
    out = []
    for i, idx in enumerate(buckets, 1):
        noise = pool.noise[idx]
        out.append({"bucket": i, "size": int(len(idx)), "clean_share": float(pool.clean[idx].mean()),
                    "noise": {k: float((noise == k).mean()) for k in NOISE_KINDS},
                    "score_min": float(scores[idx].min()), "score_max": float(scores[idx].max())})
    return out


def curve_errors(res: dict, metric: str, samples: list) -> list:
    """Errors of a run's intermediate evaluations at `samples` (each a multiple of the batch)."""
    at = {c["samples_seen"]: c for c in res.get("curve", [])}
    at[res["samples_seen"]] = res  # the final score card (not repeated as an intermediate evaluation)
    missing = [s for s in samples if s not in at]
    if missing:
        raise KeyError(f"run {res['name']}: no evaluation at {missing} samples (have {sorted(at)})")
    return [1.0 - float(at[s][metric]) for s in samples]


def check_budgets(cfg):
    bs, S = cfg.train.batch_size, cfg.buckets.size
    for key, vals in (("study.budgets", cfg.study.budgets), ("buckets.size x study.fit_passes",
                                                              [k * S for k in cfg.study.fit_passes])):
        bad = [v for v in vals if v % bs]
        if bad:
            raise ValueError(f"papers/{PAPER}/params.yaml: {key} = {bad} are not multiples of train.batch_size={bs}")
    if cfg.train.lr_schedule not in ("constant", "constant_with_warmup"):
        raise ValueError(f"papers/{PAPER}/params.yaml: train.lr_schedule={cfg.train.lr_schedule!r}: the budgets are "
                         f"read from intermediate evaluations, which equal shorter runs only at a constant LR")


def main(argv=None):
    cfg = load_config(QQTConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    pool, probe, test, scores = load_inputs(cfg)
    check_budgets(cfg)
    st, law, S, P = cfg.study, cfg.law, cfg.buckets.size, cfg.buckets.n_buckets
    buckets = method.score_buckets(scores, P, S)
    info = bucket_table(pool, scores, buckets)
    tok, run_dir = build_tokenizer(), resolve(cfg, cfg.paths.runs, PAPER)
    evaluate = light_evaluate(st.eval_retrieval)
    fit_samples = [k * S for k in st.fit_passes]
    budgets = sorted(st.budgets)
    b_grid = np.linspace(*law.b_range, law.grid_points)
    tau_grid = np.linspace(*law.tau_range, law.grid_points)
    common = dict(run_dir=run_dir, tok=tok, probe=probe, test=test, evaluate=evaluate)
    t0 = time.time()
    runs, fits, mixes, rows = [], [], [], []
    for seed in st.seeds:
        # -- observations: the top-p mixes (p = 1 is bucket 1 alone) and buckets 2..P alone
        mix_res = {}
        for p in range(1, P + 1):
            idx = np.sort(np.concatenate(buckets[:p]))
            evals = sorted(set(budgets) | (set(fit_samples) if p == 1 else set()))
            mix_res[p] = run_clip(f"seed{seed}/mix{p}", pool.subset(idx), cfg.model, cfg.train, seed=seed,
                                  samples=max(evals), eval_samples=evals[:-1], extra={"p": p}, **common)
        bucket_res = {1: mix_res[1]}
        for i in range(2, P + 1):
            bucket_res[i] = run_clip(f"seed{seed}/bucket{i}", pool.subset(buckets[i - 1]), cfg.model, cfg.train,
                                     seed=seed, samples=max(fit_samples), eval_samples=fit_samples[:-1],
                                     extra={"bucket": i}, **common)
        for r in list(mix_res.values()) + list(bucket_res.values())[1:]:
            runs.append({"name": r["name"], "seed": seed, "n_train": r["n_train"], "samples_seen": r["samples_seen"],
                         "train_seconds": r["train_seconds"],
                         "curve": r.get("curve", []) + [{k: v for k, v in r.items() if k not in ("curve", "fingerprint")}]})

        # -- fits (Eq. 3-4 per bucket, shared a and d)
        obs = {i: (fit_samples, curve_errors(bucket_res[i], st.metric, fit_samples)) for i in range(1, P + 1)}
        fit, chosen = method.fit_pools(obs, S, law.a_values, law.d_values, b_grid, tau_grid, law.shuffle_seed,
                                       law.max_points, law.normalizer)
        for i in range(1, P + 1):
            f = fit[i]
            fits.append({"seed": seed, "bucket": i, "a": f.a, "b": f.b, "tau": f.tau, "d": f.d, "loss": f.loss,
                         "samples": fit_samples, "observed": obs[i][1],
                         "fitted": [method.effective_utility(n, f.a, f.b, f.tau, f.d, S, law.normalizer)
                                    for n in fit_samples]})
        bs, taus = [fit[i].b for i in range(1, P + 1)], [fit[i].tau for i in range(1, P + 1)]

        # -- mixes: observed vs predicted (Eq. 5)
        per_budget = []
        for n in budgets:
            observed = [curve_errors(mix_res[p], st.metric, [n])[0] for p in range(1, P + 1)]
            predicted = method.mix_errors(n, chosen["a"], bs, taus, chosen["d"], S, law.tau_times_p,
                                          law.sort_by_utility, law.normalizer)
            alt = method.mix_errors(n, chosen["a"], bs, taus, chosen["d"], S, not law.tau_times_p,
                                    law.sort_by_utility, law.normalizer)
            rec = {"seed": seed, "samples": n, "passes_over_S": n / S, "observed": observed, "predicted": predicted,
                   "predicted_alt_tau": alt, "best_p_observed": method.best_pool_count(observed),
                   "best_p_predicted": method.best_pool_count(predicted),
                   "best_p_predicted_alt_tau": method.best_pool_count(alt)}
            per_budget.append(rec)
            mixes.append(rec)
        # out-of-sample points: every mix but p = 1 within the fitted passes
        held = [(r["observed"][p - 1], r["predicted"][p - 1]) for r in per_budget for p in range(1, P + 1)
                if not (p == 1 and r["samples"] <= max(fit_samples))]
        mae = float(np.mean([abs(o - q) for o, q in held]))
        lo, hi = per_budget[0], per_budget[-1]
        agree = float(np.mean([r["best_p_observed"] == r["best_p_predicted"] for r in per_budget]))
        rows += [
            {"stage": "best_p", "arm": "baseline", "seed": seed, "best_p": lo["best_p_observed"], "samples": lo["samples"]},
            {"stage": "best_p", "arm": "method", "seed": seed, "best_p": hi["best_p_observed"], "samples": hi["samples"]},
            {"stage": "gap", "arm": "baseline", "seed": seed, "samples": lo["samples"],
             "mix_advantage": lo["observed"][0] - lo["observed"][-1]},
            {"stage": "gap", "arm": "method", "seed": seed, "samples": hi["samples"],
             "mix_advantage": hi["observed"][0] - hi["observed"][-1]},
            {"stage": "prediction", "arm": "method", "seed": seed, "best_p_disagreement": 1.0 - agree,
             "mae": mae, "n_points": len(held), "a": chosen["a"], "d": chosen["d"], "mean_fit_loss": chosen["mean_loss"]},
        ]
    res = {"paper": PAPER, "profile": cfg.profile, "metric": st.metric, "bucket_size": S, "n_buckets": P,
           "pool_size": len(pool), "pool_clean_share": float(pool.clean.mean()), "buckets": info,
           "fit_samples": fit_samples, "budgets": budgets, "seeds": list(st.seeds), "fits": fits, "mixes": mixes,
           "runs": runs, "rows": rows, "experiment_seconds": time.time() - t0,
           "config": {k: to_dict(cfg)[k] for k in ("model", "train", "buckets", "study", "law")}}
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'results.json'} ({res['experiment_seconds']:.0f} s)")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
