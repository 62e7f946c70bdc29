"""Stage `experiment`: the same small CLIP trained on the curated and on a random subset (paper Sec. 4).

For each seed s (study.seeds, a subset of curation.seeds): one CLIP per arm (study.arms: random,
hierarchical, optionally flat) trained on that arm's subset of seed s with init/data-order seed s and
equal samples seen (study.train.samples), then the shared score card (common.clip.evaluate_clip):
zero-shot digit accuracy overall and per digit, colour, count, retrieval, digit linear probe.
The tail metric is the mean zero-shot accuracy over the tail digits (curation.tail_digits).
Writes reports/ssl_data_curation/results.json (rows carry `seed`); each CLIP run is cached and
resumable under runs/ssl_data_curation (common.clip_runs.run_clip).
"""

import json
import sys
import time

import numpy as np

from common.clip import build_tokenizer
from common.clip_runs import run_clip
from common.config import load_config, resolve
from common.scenes import load_scenes
from common.seeding import seed_everything
from papers.ssl_data_curation.config import SslDataCurationConfig
from papers.ssl_data_curation.curate import ARMS, load_pool

PAPER = "ssl_data_curation"
METRICS = ["zero_shot_digit", "tail_acc", "head_acc", "zero_shot_colour", "zero_shot_count", "zero_shot_mean",
           "retrieval_i2t_r1", "linear_probe_digit"]


def main(argv=None):
    cfg = load_config(SslDataCurationConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    st, tail = cfg.study, list(cfg.curation.tail_digits)
    missing = sorted(set(st.seeds) - set(cfg.curation.seeds))
    if missing:
        raise ValueError(f"papers/{PAPER}/params.yaml: study.seeds {missing} are not in curation.seeds {cfg.curation.seeds}")
    bad = sorted(set(st.arms) - set(ARMS))
    if bad or "random" not in st.arms or "hierarchical" not in st.arms:
        raise ValueError(f"papers/{PAPER}/params.yaml: study.arms={st.arms} must include random and hierarchical "
                         f"(known: {sorted(ARMS)})")
    t0 = time.time()
    seed_everything(cfg.seed)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    subsets = np.load(out / "subsets.npz")
    data_dir = resolve(cfg, cfg.paths.data, "scenes")
    pool, probe, test = load_pool(cfg), load_scenes(data_dir, "probe_train"), load_scenes(data_dir, "test")
    head = [d for d in range(10) if d not in tail]
    tok = build_tokenizer()
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    runs, rows = [], []
    for seed in st.seeds:
        for arm in st.arms:
            idx = subsets[f"{arm}_{seed}"]
            r = run_clip(f"{arm}_s{seed}", pool.subset(idx), st.model, st.train, seed=seed, run_dir=run_dir, tok=tok,
                         probe=probe, test=test, extra={"arm": arm})
            r["tail_acc"] = float(np.mean([r[f"zero_shot_digit_{d}"] for d in tail]))
            r["head_acc"] = float(np.mean([r[f"zero_shot_digit_{d}"] for d in head]))
            runs.append(r)
            print(f"{arm} seed {seed}: digit {r['zero_shot_digit']:.3f}, tail {r['tail_acc']:.3f} "
                  f"({r['train_seconds']:.0f} s)", flush=True)
            if arm in ("random", "hierarchical"):
                rows.append({"stage": "clip", "arm": ARMS[arm], "subset": arm, "seed": seed,
                             **{m: r[m] for m in METRICS}})
            if arm in ("flat", "hierarchical"):
                rows.append({"stage": "clip_ablation", "arm": ARMS[arm], "subset": arm, "seed": seed,
                             **{m: r[m] for m in METRICS}})
    res = {"rows": rows, "runs": runs, "tail_digits": tail, "seconds": time.time() - t0}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'results.json'} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
