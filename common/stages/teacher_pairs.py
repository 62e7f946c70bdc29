"""Root stage `teacher_pairs`: the base model's deterministic ODE pairs (x_T, label) -> x_0 for the distillation papers.

For `num_train` / `num_heldout` per-sample seeds (the train and heldout splits use different sampling seeds,
so held-out pairs never share an x_T with training pairs) the teacher runs the shared sampler
(common.sampling.generate: DDIM with eta 0, `nfe` steps, classifier-free guidance at `guidance_scale`,
balanced labels 0..9,0..9,..). Each x_T is drawn from its own seed (SampleNoise), so a pair is the same
whatever the batch it was made in, and a paper can regenerate any x_T from its `seed` column.

Outputs: data/teacher_pairs/pairs (a `datasets.DatasetDict`, columns noise / label / sample / seed) and
data/teacher_pairs/meta.json (sampler, NFE, network evaluations, wall time, the teacher's meta);
metrics/teacher_pairs.json the same facts for DVC. Reader: common/teacher_pairs.py.
"""

import json
import sys
import time

import numpy as np
import torch

from common.atomic import write_dir_atomic
from common.config import RootConfig, load_config, resolve, to_dict
from common.diffusion import unet_fn
from common.models import load_diffusion_model
from common.sampling import SampleNoise, SamplingSpec, generate_samples, sample_seeds
from common.seeding import seed_everything
from common.teacher_pairs import COLUMNS, STAGE, pairs_dir
from common.tracking import log_run


def make_pairs(unet, schedule, num_classes: int, n: int, seed: int, nfe: int, guidance_scale: float,
               clip_x0: bool, batch_size: int) -> dict:
    """{noise, label, sample, seed} numpy columns of n pairs, plus "nfe" and "model_calls" (the teacher's cost)."""
    c, r = unet.config.in_channels, unet.config.sample_size
    spec = SamplingSpec(n, nfe, "ddim", eta=0.0, guidance_scale=guidance_scale, seed=seed, clip_x0=clip_x0)
    out = generate_samples(unet_fn(unet), schedule, spec, (c, r, r), num_classes, batch_size=batch_size)
    seeds = sample_seeds(seed, n)
    noise = SampleNoise(seeds, (c, r, r))()  # the x_T the sampler started from (same seeds, same draws)
    return {"noise": noise.numpy().astype(np.float32), "label": out.labels.numpy().astype(np.int64),
            "sample": out.images.numpy().astype(np.float32), "seed": np.asarray(seeds, dtype=np.int64),
            "nfe": out.nfe, "model_calls": out.model_calls}


def write_pairs(splits: dict, out_dir):
    """The splits' columns as a DatasetDict at out_dir (atomically)."""
    import datasets

    shape = splits["train"]["noise"].shape[1:]
    features = datasets.Features({"noise": datasets.Array3D(shape=shape, dtype="float32"),
                                  "label": datasets.Value("int64"),
                                  "sample": datasets.Array3D(shape=shape, dtype="float32"),
                                  "seed": datasets.Value("int64")})
    dd = datasets.DatasetDict({name: datasets.Dataset.from_dict({k: cols[k] for k in COLUMNS}, features=features)
                               for name, cols in splits.items()})
    write_dir_atomic(out_dir, dd.save_to_disk)


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    tp = cfg.teacher_pairs
    seed_everything(cfg.seed)
    unet, schedule, teacher_meta = load_diffusion_model(resolve(cfg, cfg.paths.models, "base_model"))
    k = cfg.base_model.unet.num_classes
    t0 = time.time()
    splits = {}
    for name, n, seed in (("train", tp.num_train, tp.train_seed), ("heldout", tp.num_heldout, tp.heldout_seed)):
        splits[name] = make_pairs(unet, schedule, k, n, seed, tp.nfe, tp.guidance_scale, tp.clip_x0, tp.batch_size)
        print(f"{name}: {n} pairs, {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0
    out = pairs_dir(cfg)
    write_pairs(splits, out / "pairs")
    meta = {"method": "ddim", "eta": 0.0, "nfe": splits["train"]["nfe"], "guidance_scale": tp.guidance_scale,
            "clip_x0": tp.clip_x0, "spacing": "linspace", "seeds": {"train": tp.train_seed, "heldout": tp.heldout_seed},
            "counts": {s: int(len(v["label"])) for s, v in splits.items()},
            "model_calls": sum(v["model_calls"] for v in splits.values()),
            "teacher": {"dir": "models/base_model", "step": teacher_meta.get("step"),
                        "params": teacher_meta.get("params")}}
    # meta.json sits in the stage's output, which the papers' stages depend on: only facts that a rerun
    # reproduces go there, so a rerun does not invalidate them; the timing goes to the metrics file only
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    timing = {"seconds": seconds, "seconds_per_pair": seconds / sum(meta["counts"].values()),
              "torch_threads": torch.get_num_threads()}
    metrics = resolve(cfg, "metrics", "teacher_pairs.json")
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text(json.dumps({**meta, **timing}, indent=2))
    log_run(cfg, "shared", STAGE, {"teacher_pairs": to_dict(tp)},
            {"seconds": seconds, "nfe": meta["nfe"], "pairs": sum(meta["counts"].values())})
    print(json.dumps(meta), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
