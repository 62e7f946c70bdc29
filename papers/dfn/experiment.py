"""Stage `experiment`: train the filters, filter the pool, train the students (paper Sec. 3-4).

1. Filters: for each dirt share p (filter.dirty_shares) and seed s, a small CLIP trained with one
   budget on hq with round(p * |hq|) of its pairs replaced by pool pairs; its own accuracy (zero-shot,
   retrieval, linear probe on the test split) and its pool scores (method.score_pairs, cosine of
   L2-normalised embeddings), saved as runs/dfn/filters/<name>/pool_scores.npy.
2. Filtering quality from the ground truth: clean share of the top `keep_fraction` (precision),
   recall, ROC AUC clean vs noisy, also over the pool pairs the filter never saw in training.
3. Students: the same small CLIP at equal samples seen on the unfiltered pool, the heuristically
   filtered pool and each filter's top fraction (filter seed s -> student seed s).
Writes reports/dfn/results.json (rows carry `seed`); every CLIP run is cached and resumable
(common.clip_runs.run_clip) under runs/dfn.
"""

import json
import sys
import time

import numpy as np
import torch

from common.clip import build_tokenizer, evaluate_clip
from common.clip_runs import run_clip
from common.config import UnreadableInputError, load_config, reading, require, resolve
from common.data import check_full_data
from common.scenes import CANVAS, Scenes, load_image_text_shards, load_scenes
from common.seeding import seed_everything
from papers.dfn import method
from papers.dfn.config import DfnConfig

PAPER = "dfn"
CURVE = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5]  # kept fractions of the precision curves in the report


def check_sources(cfg) -> dict:
    """The full profile's shard folders {filter_data, pool} (None on cpu / tiny); a missing one is a one-line error."""
    return check_full_data(cfg, PAPER, ("filter_data", "pool"),
                           needs="webdataset shards: `filter_data` the DFN's high-quality filter-training pairs "
                                 "(HQITP-350M is Apple-internal; CC12M + CC3M + SS15M is the paper's public stand-in), "
                                 "`pool` DataComp CommonPool")


def load_inputs(cfg):
    """(hq, pool, probe_train, test). cpu / tiny: the root `scenes` hq and pool splits; full: the shards at
    `filter_data` (the filter's training pairs) and `pool` (common.scenes.load_image_text_shards), each key on its
    own. The evaluation splits are the shared scenes' on every profile."""
    src = check_sources(cfg)
    data_dir = resolve(cfg, cfg.paths.data, "scenes")
    hq, pool = (load_scenes(data_dir, split) if src[key] is None else load_image_text_shards(src[key], CANVAS)
                for key, split in (("filter_data", "hq"), ("pool", "pool")))
    return hq, pool, load_scenes(data_dir, "probe_train"), load_scenes(data_dir, "test")


def concat(a: Scenes, b: Scenes) -> Scenes:
    """Two sets of scenes as one (image and caption columns; the ground truth travels with them)."""
    return Scenes(torch.cat([a.images, b.images]), a.captions + b.captions, a.true_captions + b.true_captions,
                  np.concatenate([a.noise, b.noise]), np.concatenate([a.severity, b.severity]),
                  np.concatenate([a.count, b.count]), a.digits + b.digits, a.colours + b.colours)


def name_of(share: float) -> str:
    return f"p{int(round(100 * share)):03d}"


def main(argv=None):
    cfg = load_config(DfnConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    seed_everything(cfg.seed)
    hq, pool, probe, test = load_inputs(cfg)
    tok = build_tokenizer()
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    frac, fs, st = cfg.student.keep_fraction, cfg.filter, cfg.student
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"papers/dfn/params.yaml: student.keep_fraction={frac} is not in (0, 1]")
    if not any(p == 0.0 for p in fs.dirty_shares) or not any(p > 0.0 for p in fs.dirty_shares):
        raise ValueError("papers/dfn/params.yaml: filter.dirty_shares needs 0.0 (the clean DFN) and a share > 0")
    missing = sorted(set(st.seeds) - set(fs.seeds))
    if missing:
        raise ValueError(f"papers/dfn/params.yaml: student.seeds {missing} have no filter of that seed (filter.seeds)")
    clean = pool.clean
    n_keep = int(round(frac * len(pool)))
    pool_info = {"n_pool": len(pool), "n_clean": int(clean.sum()), "n_keep": n_keep,
                 "clean_share": float(clean.mean()),
                 "noise_shares": {k: float((pool.noise == k).mean()) for k in sorted(set(pool.noise))},
                 "enough_clean_for_top_fraction": bool(clean.sum() >= n_keep)}
    print(json.dumps({"pool": pool_info}), flush=True)

    # ---------------------------------------------------------------- 1-2. filters and their quality
    filters, scores = [], {}
    for p in fs.dirty_shares:
        for s in fs.seeds:
            name = f"filter_{name_of(p)}_s{s}"
            folder = run_dir / "filters" / name
            idx = method.pollute(len(hq), len(pool), p, seed=10_000 + s)
            train_set = concat(hq.subset(idx["hq"]), pool.subset(idx["pool"]))

            def evaluate(model, tok_, probe_, test_, cl, folder=folder):
                m = evaluate_clip(model, tok_, probe_, test_, cl)
                np.save(folder / "pool_scores.npy", method.score_pairs(model, tok_, pool.images, pool.captions, cl))
                return m

            res = run_clip(name, train_set, fs.model, fs.train, seed=s, run_dir=run_dir / "filters", tok=tok,
                           probe=probe, test=test, evaluate=evaluate,
                           extra={"dirty_share": p, "writes": "pool_scores.npy"})
            # written by this stage's filter run beside its result.json, which caches the run: rerunning the
            # stage reads the run back, so the fix for a lost or broken score file is to retrain that filter
            redo = (f"written with {folder / 'result.json'} by this stage's filter run; delete {folder} and rerun "
                    f"dvc repro papers/{PAPER}/dvc.yaml:experiment")
            sc_file = require(folder / "pool_scores.npy", hint=redo)
            with reading(sc_file, hint=redo):
                sc = np.load(sc_file)
            if len(sc) != len(pool):
                raise UnreadableInputError(f"{sc_file} holds {len(sc)} scores for a pool of {len(pool)} ({redo})")
            scores[(p, s)] = sc
            unseen = np.ones(len(pool), dtype=bool)
            unseen[idx["pool"]] = False
            q = method.filtering_quality(sc, clean, frac, pool.severity)
            qu = method.filtering_quality(sc[unseen], clean[unseen], frac)
            row = {"stage": "filter", "dirty_share": p, "seed": s, "n_pool_pairs_in_training": int(len(idx["pool"])),
                   "filter_train_clean_share": float(train_set.clean.mean()),
                   **{k: v for k, v in res.items() if k not in ("name", "fingerprint", "dirty_share", "writes")},
                   **q, "precision_unseen": qu["precision"], "auc_unseen": qu["auc"],
                   "datacomp_n_keep": int(len(method.datacomp_keep(sc, frac))),
                   "precision_curve": {str(f): method.filtering_quality(sc, clean, f)["precision"] for f in CURVE}}
            filters.append(row)
            print(json.dumps({k: row[k] for k in ("dirty_share", "seed", cfg.metric, "linear_probe_digit",
                                                    "precision", "auc", "precision_unseen")}), flush=True)

    # ---------------------------------------------------------------- 3. students at equal samples seen
    heur = method.heuristic_keep(pool.images, pool.captions, rules=cfg.heuristic.rules,
                                 brightness=cfg.heuristic.brightness,
                                 min_colour_pixels=cfg.heuristic.min_colour_pixels,
                                 min_blob_area=cfg.heuristic.min_blob_area, dilation=cfg.heuristic.dilation)
    if len(heur) == 0:
        raise ValueError("papers/dfn/params.yaml: the heuristic filter keeps no pool pair; loosen `heuristic`")
    heuristic_info = {"n_keep": int(len(heur)), "kept_fraction": float(len(heur) / len(pool)),
                      "precision": float(clean[heur].mean()), "recall": float(clean[heur].sum() / clean.sum()),
                      **{f"kept_share_severity_{k}": float((pool.severity[heur] == k).mean()) for k in range(4)}}
    print(json.dumps({"heuristic": heuristic_info}), flush=True)
    students = []
    for s in st.seeds:
        arms = [("unfiltered", None, np.arange(len(pool))), ("heuristic", None, heur)]
        arms += [(f"dfn_{name_of(p)}", p, method.keep_top_fraction(scores[(p, s)], frac)) for p in fs.dirty_shares]
        for arm, p, idx in arms:
            res = run_clip(f"student_{arm}_s{s}", pool.subset(idx), st.model, st.train, seed=s,
                           run_dir=run_dir / "students", tok=tok, probe=probe, test=test)
            row = {"stage": "student", "data": arm, "dirty_share": p, "seed": s,
                   "data_precision": float(clean[idx].mean()),
                   **{k: v for k, v in res.items() if k not in ("name", "fingerprint")}}
            students.append(row)
            print(json.dumps({k: row[k] for k in ("data", "seed", "n_train", "data_precision", cfg.metric)}),
                  flush=True)

    rows = filters + students + claim_rows(filters, students, cfg.metric, fs.dirty_shares)
    fixture = np.array([0.9, 0.8, 0.8, 0.7, 0.1])
    results = {"metric": cfg.metric, "keep_fraction": frac, "pool": pool_info, "heuristic": heuristic_info,
               "thresholding": {"fixture": fixture.tolist(), "fraction": 0.4,
                                "datacomp_keeps": int(len(method.datacomp_keep(fixture, 0.4))),
                                "ours_keeps": int(len(method.keep_top_fraction(fixture, 0.4)))},
               "filter_samples": fs.train.samples, "student_samples": st.train.samples,
               "n_runs": len(filters) + len(students), "seconds": time.time() - t0, "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({"seconds": round(time.time() - t0, 1)}))


def claim_rows(filters, students, metric, shares):
    """Per-seed rows in the baseline / method form of common.claims.

    - vs_unfiltered, vs_heuristic: the student on the clean DFN's top fraction (method) against the
      student on the unfiltered pool / the heuristic subset (baseline), `metric` of the student;
    - accuracy_vs_quality[_student]: relative loss, clean -> dirtiest filter, of the filter's filtering
      quality (method: precision of the top fraction / the student's `metric`) against that of the
      filter's own `metric` (baseline): the paper's "filter accuracy does not predict filtering quality".
    """
    rows = []
    stu = {(r["data"], r["seed"]): r for r in students}
    fil = {(r["dirty_share"], r["seed"]): r for r in filters}
    dirtiest = max(shares)
    for (data, s), r in sorted(stu.items(), key=lambda kv: kv[0][1]):
        if data != "dfn_p000":
            continue
        for base, comp in (("unfiltered", "vs_unfiltered"), ("heuristic", "vs_heuristic")):
            if (base, s) in stu:
                rows.append({"stage": "claim", "comparison": comp, "arm": "baseline", "seed": s,
                             metric: stu[(base, s)][metric]})
                rows.append({"stage": "claim", "comparison": comp, "arm": "method", "seed": s, metric: r[metric]})
    for s in sorted({k[1] for k in fil}):
        c, d = fil.get((0.0, s)), fil.get((dirtiest, s))
        if c is None or d is None:
            continue
        acc_drop = (c[metric] - d[metric]) / abs(c[metric])
        q_drop = (c["precision"] - d["precision"]) / abs(c["precision"])
        common_ = {"stage": "claim", "seed": s, "dirty_share": dirtiest}
        rows.append({**common_, "comparison": "accuracy_vs_quality", "arm": "baseline", "relative_drop": acc_drop})
        rows.append({**common_, "comparison": "accuracy_vs_quality", "arm": "method", "relative_drop": q_drop})
        sc, sd = stu.get(("dfn_p000", s)), stu.get((f"dfn_{name_of(dirtiest)}", s))
        if sc is not None and sd is not None:
            s_drop = (sc[metric] - sd[metric]) / abs(sc[metric])
            rows.append({**common_, "comparison": "accuracy_vs_student", "arm": "baseline", "relative_drop": acc_drop})
            rows.append({**common_, "comparison": "accuracy_vs_student", "arm": "method", "relative_drop": s_drop})
    return rows


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
