"""Stage `evaluate`: every data selector of the data papers on one pool, one student, equal samples seen.

Pool: the shared captioned scenes' `pool` split (30k pairs, 40% clean captions, digits long-tailed). Student:
papers/dfn's (its CLIP model, recipe, samples seen and seeds). At each kept fraction f (params `fractions`; the
papers' own: DFN's 15%, Scaling (Down) CLIP's Top 40%) and student seed s, one student per selector:

  random   no filtering: a uniformly random subset of round(f N) pairs (seeded by s, as papers/ssl_data_curation's)
  topx     Scaling (Down) CLIP: the Top f of the pool by the teacher's image-text cosine (models/scene_clip)
  dfn      DFN: the top f by the clean data filtering network of seed s (papers/dfn's trained filter's scores)
  kmeans   SSL data curation: hierarchical k-means with resampling on the teacher's image embeddings, then
           balanced sampling of round(f N) pairs (papers/ssl_data_curation's hierarchy and RNG streams, seed s)

and, once per seed: `full` (the whole pool at the same samples seen), `qqt` (the top p* quality buckets, p* the
best mix of papers/qqt_data_filtering's fitted laws for seed s at the student's samples seen) and, with
`catlip`, CatLIP's objective on the full pool and on DFN's subset at the lowest fraction (probe only: no text
tower). Students papers/dfn already trained (its clean DFN's top fraction and the unfiltered pool, same model,
recipe, samples and seed) are read from reports/dfn/results.json, not retrained. Writes
reports/data_curation_comparison/results.json (one row per selector x fraction x seed) and pairs.json (the rows
the claims compare).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Dict, List, Optional

import numpy as np

from common.atomic import atomic_file
from common.clip import build_tokenizer
from common.clip_runs import run_clip
from common.comparison import pair_rows, write_pairs
from common.config import ConfigError, UnreadableInputError, load_config, read_json, reading, require, resolve
from common.scenes import load_scenes
from common.seeding import seed_everything
from common.teacher import teacher_scores
from papers.catlip.config import CatlipConfig
from papers.catlip.experiment import label_data, run_catlip
from papers.catlip.method import multi_hot
from papers.data_curation_comparison.config import DataCurationComparisonConfig
from papers.dfn import method as dfn
from papers.dfn.config import DfnConfig
from papers.dfn.experiment import name_of
from papers.qqt_data_filtering import method as qqt
from papers.qqt_data_filtering.config import QQTConfig
from papers.scaling_down_clip.config import ScalingDownClipConfig
from papers.scaling_down_clip.method import top_x_subset
from papers.ssl_data_curation import method as ssl
from papers.ssl_data_curation.config import SslDataCurationConfig
from papers.ssl_data_curation.curate import load_features

NAME = "data_curation_comparison"
SCHEMAS = {"dfn": DfnConfig, "scaling_down_clip": ScalingDownClipConfig, "qqt_data_filtering": QQTConfig,
           "ssl_data_curation": SslDataCurationConfig, "catlip": CatlipConfig}
STAGE = {"dfn": "experiment", "qqt_data_filtering": "experiment", "ssl_data_curation": "curate"}
SELECTORS = ["random", "topx", "dfn", "kmeans"]  # the selectors run at every kept fraction


def paper_configs(overrides) -> Dict[str, object]:
    """Each paper's config at this run's profile (only `profile=` overrides travel to the papers)."""
    prof = [o for o in overrides if o.startswith("profile=")]
    return {p: load_config(schema, paper=p, overrides=prof) for p, schema in SCHEMAS.items()}


def read_paper(reports, paper: str, name: str = "results.json", keys=()) -> dict:
    """reports/<paper>/<name>, made by that paper's stage; a missing one names the stage."""
    return read_json(reports / paper / name, f"papers/{paper}/dvc.yaml:{STAGE[paper]}", keys)


# --------------------------------------------------------------------------- settings: each paper's own rule


@dataclass
class Settings:
    fractions: List[float]        # kept fractions, ascending
    seeds: List[int]              # student seeds (the replication unit)
    dfn_dirty_share: float        # the DFN filter that scores the pool
    qqt_buckets: Dict[int, int]   # seed -> number of QQT buckets kept
    bucket_size: int              # QQT's S
    tail_digits: List[int]        # SSL's tail concepts


def qqt_best_buckets(qqt_res: dict, law, bucket_size: int, samples: int, seeds) -> Dict[int, int]:
    """QQT's own rule (estimate_best_pool): per seed, the top-p mix with the least error predicted by that
    seed's fitted laws (Eq. 5, papers/qqt_data_filtering method.mix_errors) at `samples` samples seen."""
    out = {}
    for s in seeds:
        fits = sorted((f for f in qqt_res["fits"] if f["seed"] == s), key=lambda f: f["bucket"])
        if not fits:
            raise ConfigError(f"reports/qqt_data_filtering/results.json has no fitted laws for seed {s}: "
                              f"set qqt_buckets in papers/{NAME}/params.yaml or add the seed to its study.seeds")
        errors = qqt.mix_errors(samples, fits[0]["a"], [f["b"] for f in fits], [f["tau"] for f in fits], fits[0]["d"],
                                bucket_size, law.tau_times_p, law.sort_by_utility, law.normalizer)
        out[s] = qqt.best_pool_count(errors)
    return out


def settings(cfg, papers: Dict[str, object], reports) -> Settings:
    """Every selector's setting from params, else from its own paper's params / results (null = the paper's)."""
    d, sdc, q, c = papers["dfn"], papers["scaling_down_clip"], papers["qqt_data_filtering"], papers["ssl_data_curation"]
    fractions = cfg.fractions or [d.student.keep_fraction, sdc.quality.compare_pct / 100.0]
    fractions = sorted({round(float(f), 4) for f in fractions})
    seeds = list(cfg.seeds if cfg.seeds is not None else d.student.seeds)
    dirty = cfg.dfn_dirty_share if cfg.dfn_dirty_share is not None else min(d.filter.dirty_shares)
    if dirty not in d.filter.dirty_shares:
        raise ConfigError(f"papers/{NAME}/params.yaml: dfn_dirty_share={dirty} is not one of papers/dfn's "
                          f"filter.dirty_shares {list(d.filter.dirty_shares)} (no trained filter scores the pool)")
    missing = sorted(set(seeds) - set(d.filter.seeds))
    if missing:
        raise ConfigError(f"papers/{NAME}/params.yaml: seeds {missing} have no DFN filter (papers/dfn filter.seeds)")
    if cfg.qqt_buckets is not None:
        if cfg.qqt_buckets > q.buckets.n_buckets:
            raise ConfigError(f"papers/{NAME}/params.yaml: qqt_buckets={cfg.qqt_buckets} exceeds papers/"
                              f"qqt_data_filtering's {q.buckets.n_buckets} buckets")
        buckets = {s: cfg.qqt_buckets for s in seeds}
    else:
        res = read_paper(reports, "qqt_data_filtering", keys=("fits",))
        buckets = qqt_best_buckets(res, q.law, q.buckets.size, d.student.train.samples, seeds)
    return Settings(fractions, seeds, float(dirty), buckets, q.buckets.size, list(c.curation.tail_digits))


# --------------------------------------------------------------------------- inputs


def load_inputs(cfg, papers, s: Settings):
    """The pool and evaluation splits, the teacher's pool scores, SSL's features, DFN's filter scores per seed,
    DFN's student rows and SSL's own curated subsets (to check that the hierarchy here is the paper's)."""
    data_dir = resolve(cfg, cfg.paths.data, "scenes")
    pool, probe, test = (load_scenes(data_dir, split) for split in ("pool", "probe_train", "test"))
    hint = f"papers/dfn/dvc.yaml:{STAGE['dfn']}"
    dfn_scores = {}
    for seed in s.seeds:
        path = require(resolve(cfg, cfg.paths.runs, "dfn", "filters", f"filter_{name_of(s.dfn_dirty_share)}_s{seed}",
                               "pool_scores.npy"), hint)
        with reading(path, hint):
            dfn_scores[seed] = np.load(path)
        if len(dfn_scores[seed]) != len(pool):
            raise UnreadableInputError(f"{path} holds {len(dfn_scores[seed])} scores for a pool of {len(pool)} "
                                       f"(rerun {hint})")
    reports = resolve(cfg, cfg.paths.reports)
    subsets = require(reports / "ssl_data_curation" / "subsets.npz", "papers/ssl_data_curation/dvc.yaml:curate")
    with reading(subsets, "papers/ssl_data_curation/dvc.yaml:curate"):
        ssl_subsets = dict(np.load(subsets))
    return SimpleNamespace(pool=pool, probe=probe, test=test, teacher=teacher_scores(cfg, len(pool)),
                           features=load_features(papers["ssl_data_curation"], len(pool)), dfn_scores=dfn_scores,
                           dfn_rows=read_paper(reports, "dfn", keys=("rows",))["rows"], ssl_subsets=ssl_subsets)


# --------------------------------------------------------------------------- selectors


def kmeans_levels(X: np.ndarray, c, seed: int) -> List[ssl.Level]:
    """papers/ssl_data_curation's hierarchy for `seed`: resampling k-means level by level (Sec. 3.2), with the
    RNG streams of its curate stage, so it is the hierarchy that stage built."""
    levels, points = [], X
    for t, (k, m, r, it) in enumerate(zip(c.n_clusters, c.sample_sizes, c.n_resamples, c.n_iters)):
        C, parent = ssl.resampling_kmeans(points, k, np.random.default_rng([seed, 0, t]), m, r, it,
                                          strategy=c.resample_strategy)
        levels.append(ssl.Level(C, parent))
        points = C
    return levels


def select(arm: str, n: int, seed: int, inp, levels, curation) -> np.ndarray:
    """Indices of the n pool pairs selector `arm` keeps for student seed `seed`."""
    N = len(inp.teacher)
    if arm == "random":
        return np.sort(np.random.default_rng([seed, 3]).choice(N, n, replace=False))
    if arm == "topx":
        return top_x_subset(inp.teacher, 100.0 * n / N)
    if arm == "dfn":
        return dfn.keep_top_fraction(inp.dfn_scores[seed], n / N)
    if arm == "kmeans":
        return ssl.hierarchical_sampling(levels, n, np.random.default_rng([seed, 1]), curation.sampling_strategy,
                                         inp.features)
    raise ValueError(f"unknown selector {arm!r}")


def kept(pool, idx: np.ndarray, tail_digits) -> dict:
    """Ground truth of the kept pairs: clean-caption share and the tail digits' share of digit occurrences
    (papers/ssl_data_curation's tail share)."""
    shares = ssl.concept_shares([pool.digits[i] for i in idx], 10)
    return {"n_train": int(len(idx)), "clean_share": float(pool.clean[idx].mean()),
            "tail_share": float(shares[list(tail_digits)].sum())}


def card(res: dict) -> dict:
    """The compared metrics of one CLIP's score card (retrieval R@1: mean of image->text and text->image)."""
    keys = ("zero_shot_mean", "zero_shot_digit", "zero_shot_colour", "zero_shot_count", "linear_probe_digit",
            "retrieval_i2t_r1", "retrieval_t2i_r1", "samples_seen", "train_seconds")
    out = {k: res[k] for k in keys}
    out["retrieval_r1"] = (res["retrieval_i2t_r1"] + res["retrieval_t2i_r1"]) / 2
    return out


def dfn_row(rows, data: str, seed: int, n_train: int) -> Optional[dict]:
    """papers/dfn's student row for (data, seed), if it trained that student (same size of training set)."""
    got = [r for r in rows if r.get("stage") == "student" and r.get("data") == data and r.get("seed") == seed
           and r.get("n_train") == n_train]
    return got[0] if got else None


# --------------------------------------------------------------------------- the stage


def student(name, idx, seed, inp, d, ctx, reuse: Optional[dict]) -> dict:
    """The student's card on pool[idx]: papers/dfn's row if it trained this student, else trained here."""
    if reuse is not None:
        return {**card(reuse), "source": "dfn"}
    res = run_clip(name, inp.pool.subset(idx), d.student.model, d.student.train, seed=seed, run_dir=ctx.run_dir,
                   tok=ctx.tok, probe=inp.probe, test=inp.test)
    return {**card(res), "source": NAME}


def run(cfg, papers, s: Settings, inp) -> List[dict]:
    """One row per selector x kept fraction x seed (see the module docstring)."""
    d, c = papers["dfn"], papers["ssl_data_curation"].curation
    N = len(inp.pool)
    ctx = SimpleNamespace(run_dir=resolve(cfg, cfg.paths.runs, NAME, "students"), tok=build_tokenizer())
    dfn_data = f"dfn_{name_of(s.dfn_dirty_share)}"
    rows = []
    for seed in s.seeds:
        t0 = time.time()
        levels = kmeans_levels(inp.features, c, seed)
        ref = inp.ssl_subsets.get(f"hierarchical_{seed}")
        same = ref is not None and np.array_equal(
            ssl.hierarchical_sampling(levels, c.target_size, np.random.default_rng([seed, 1]), c.sampling_strategy,
                                      inp.features), ref)
        kmeans_seconds = time.time() - t0
        full = np.arange(N)
        rows.append({"arm": "full", "fraction": 1.0, "seed": seed, **kept(inp.pool, full, s.tail_digits),
                     **student(f"full_s{seed}", full, seed, inp, d, ctx, dfn_row(inp.dfn_rows, "unfiltered", seed, N))})
        for f in s.fractions:
            n = int(round(f * N))
            for arm in SELECTORS:
                idx = select(arm, n, seed, inp, levels, c)
                reuse = dfn_row(inp.dfn_rows, dfn_data, seed, n) if arm == "dfn" else None
                row = {"arm": arm, "fraction": f, "seed": seed, **kept(inp.pool, idx, s.tail_digits)}
                if reuse is not None and abs(reuse["data_precision"] - row["clean_share"]) > 1e-9:
                    raise UnreadableInputError(
                        f"reports/dfn/results.json: student {dfn_data} seed {seed} was trained on a subset with clean "
                        f"share {reuse['data_precision']:.4f}, its filter's scores give {row['clean_share']:.4f} "
                        "(rerun dvc repro papers/dfn/dvc.yaml)")
                row.update(student(f"{arm}_f{int(round(1000 * f)):04d}_s{seed}", idx, seed, inp, d, ctx, reuse))
                if arm == "kmeans":
                    row.update(kmeans_seconds=kmeans_seconds, hierarchy_is_papers=bool(same))
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("arm", "fraction", "seed", "clean_share", "tail_share",
                                                      "zero_shot_mean", "source")}), flush=True)
        p = s.qqt_buckets[seed]
        idx = np.sort(np.concatenate(qqt.score_buckets(inp.teacher, p, s.bucket_size)))
        rows.append({"arm": "qqt", "fraction": round(len(idx) / N, 4), "buckets": p, "seed": seed,
                     **kept(inp.pool, idx, s.tail_digits), **student(f"qqt_p{p}_s{seed}", idx, seed, inp, d, ctx, None)})
    if cfg.catlip:
        rows += catlip_rows(papers, s, inp, ctx)
    return rows


def catlip_rows(papers, s: Settings, inp, ctx) -> List[dict]:
    """CatLIP's objective (papers/catlip: image tower + BCE over caption labels, its label vocabulary built on
    the pool's captions) with the same tower, recipe and samples seen, on the full pool and on DFN's subset at
    the lowest fraction. Probe only: its `probe_digit` reads the pooled backbone (papers/catlip's probe point)."""
    d, N = papers["dfn"], len(inp.pool)
    sets, vocab, _ = label_data(papers["catlip"], inp.pool.captions)
    targets = multi_hot(sets, vocab)
    f = s.fractions[0]
    rows = []
    for seed in s.seeds:
        for arm, idx, frac in (("catlip_full", np.arange(N), 1.0),
                               ("catlip_dfn", dfn.keep_top_fraction(inp.dfn_scores[seed], f), f)):
            res = run_catlip(f"{arm}_s{seed}", inp.pool.subset(idx), targets[idx], d.student.model, d.student.train,
                             seed=seed, run_dir=ctx.run_dir.parent / "catlip", probe=inp.probe, test=inp.test)
            rows.append({"arm": arm, "fraction": frac, "seed": seed, **kept(inp.pool, idx, s.tail_digits),
                         "linear_probe_digit": res["probe_digit"], "probe_digit_head": res["probe_digit_head"],
                         "samples_seen": res["samples_seen"], "train_seconds": res["train_seconds"], "source": NAME})
    return rows


def claim_pairs(rows, s: Settings) -> List[dict]:
    """The paired rows of the page's claims (papers/data_curation_comparison/claims.yaml), unit = student seed."""
    low, high = s.fractions[0], s.fractions[-1]
    at = lambda arm, f=None: [r for r in rows if r["arm"] == arm and (f is None or r["fraction"] == f)]  # noqa: E731
    pairs = [("dfn_vs_random", "dfn", "random", at("dfn", low) + at("random", low)),
             ("dfn_vs_topx", "dfn", "topx", at("dfn", low) + at("topx", low)),
             ("kmeans_vs_topx", "kmeans", "topx", at("kmeans", low) + at("topx", low)),
             ("topx_vs_full", "topx", "full", at("topx", high) + at("full")),
             ("qqt_vs_topx", "qqt", "topx", at("qqt") + at("topx", low))]
    return [p for name, m, b, sel in pairs for p in pair_rows(sel, name, m, b, "seed")]


def main(argv=None):
    overrides = sys.argv[1:] if argv is None else argv
    cfg = load_config(DataCurationComparisonConfig, paper=NAME, overrides=overrides)
    if cfg.profile == "full":
        raise ConfigError(f"papers/{NAME} has no full profile: the papers' full-scale pools differ (CommonPool, WebLI, "
                          "DataComp medium, a web image pool, CC3M), so there is no shared pool to select from")
    papers = paper_configs(overrides)
    seed_everything(cfg.seed)
    t0 = time.time()
    reports = resolve(cfg, cfg.paths.reports)
    s = settings(cfg, papers, reports)
    inp = load_inputs(cfg, papers, s)
    rows = run(cfg, papers, s, inp)
    out = reports / NAME
    out.mkdir(parents=True, exist_ok=True)
    write_pairs(out / "pairs.json", rows, [], unit="seed", more=claim_pairs(rows, s))
    d = papers["dfn"]
    new = [r for r in rows if r["source"] == NAME]
    results = {"fractions": s.fractions, "seeds": s.seeds, "dfn_dirty_share": s.dfn_dirty_share,
               "qqt_buckets": {str(k): v for k, v in s.qqt_buckets.items()}, "bucket_size": s.bucket_size,
               "tail_digits": s.tail_digits, "pool_size": len(inp.pool), "pool_clean_share": float(inp.pool.clean.mean()),
               "student_samples": d.student.train.samples, "student_batch": d.student.train.batch_size,
               "student_model": asdict(d.student.model),
               "dfn_keep_fraction": d.student.keep_fraction,
               "topx_compare_pct": papers["scaling_down_clip"].quality.compare_pct,
               "ssl_curation": asdict(papers["ssl_data_curation"].curation),
               "catlip_v_tau": papers["catlip"].labels.v_tau,
               "n_reused": len(rows) - len(new), "n_trained_here": len(new),
               "new_train_seconds": float(sum(r["train_seconds"] for r in new)),
               "rows": rows, "eval_seconds": time.time() - t0}
    with atomic_file(out / "results.json") as tmp:  # a killed stage leaves no half-written results
        tmp.write_text(json.dumps(results, indent=1))
    print(f"{len(new)} students trained here, {len(rows) - len(new)} reused, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
