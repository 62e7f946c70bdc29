"""Stage `dape`: the tagger (RAM's role) on clean HR scenes, then DAPE's LoRA student per training seed.

1. Tagger: trained once on the HR training scenes with a multi-label BCE against the scenes' known tags (RAM is
   pre-trained on 14M images; ours learns the scene vocabulary), then frozen: the teacher.
2. DAPE (official basicsr/models/dape_model.py): for each seed s in `train_seeds`, a copy of the tagger + LoRA
   (r = 8, q and v) sees LR_up and matches the teacher on HR: MSE(e_LR, e_HR) + soft BCE (method.dape_loss).
   Writes models/seesr/tagger, models/seesr/dape/seed<s> (the adapters only) and reports/seesr/dape.json.
"""

import copy
import json
import sys
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from common.atomic import atomic_file
from common.config import load_config, read_json, reading, require, resolve, to_dict
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train
from papers.seesr import method
from papers.seesr.config import SeeSRConfig
from papers.seesr.data import read_pairs

PAPER = "seesr"
STAGE = f"papers/{PAPER}/dvc.yaml:dape"


def build_tagger(cfg) -> method.Tagger:
    t = cfg.tagger
    return method.Tagger(32, t.patch, t.dim, t.depth, t.heads, t.embed_dim, len(method.TAGS))


def tagger_dir(cfg):
    return resolve(cfg, cfg.paths.models, PAPER, "tagger")


def dape_path(cfg, seed: int):
    return resolve(cfg, cfg.paths.models, PAPER, "dape", f"seed{seed}.pt")


def load_tagger(cfg) -> method.Tagger:
    path = require(tagger_dir(cfg) / "model.pt", STAGE)
    model = build_tagger(cfg)
    with reading(path, STAGE):
        model.load_state_dict(torch.load(path))
    return model.eval().requires_grad_(False)


def load_dape(cfg, seed: int, tagger: method.Tagger = None):
    """The LoRA student of training seed `seed`: the tagger + its adapters."""
    from peft import set_peft_model_state_dict

    student = method.add_lora(copy.deepcopy(tagger or load_tagger(cfg)), cfg.dape.lora_r, cfg.dape.lora_alpha)
    path = require(dape_path(cfg, seed), STAGE)
    with reading(path, STAGE):
        set_peft_model_state_dict(student, torch.load(path))
    return student.eval().requires_grad_(False)


def tag_loss(model, x, tags, gen):
    return F.binary_cross_entropy_with_logits(model(x)[1], tags)


def train_tagger(cfg, pairs) -> dict:
    seed_everything(cfg.tagger.train.seed)
    res = train(build_tagger(cfg), tag_loss, [pairs.hr, pairs.tags], cfg.tagger.train,
                resolve(cfg, cfg.paths.runs, PAPER, "tagger", "checkpoints"), desc=f"{PAPER} tagger", use_ema=False,
                run_fingerprint=fingerprint(to_dict(cfg.tagger), [__file__, method.__file__]))
    out = tagger_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "model.pt") as tmp:
        torch.save(res.model.state_dict(), tmp)
    rec = {"seconds": res.train_seconds, "final_loss": res.history[-1]["loss"],
           "params": sum(p.numel() for p in res.model.parameters())}
    (out / "meta.json").write_text(json.dumps(rec, indent=1))
    log_run(cfg, PAPER, "tagger", to_dict(cfg.tagger), rec, seed=cfg.tagger.train.seed, history=res.history)
    return {**rec, "history": res.history}


def dape_forward(model, hr, lr_up, gen):
    return model(hr, lr_up)


def train_dape(cfg, pairs, tagger, seed: int) -> dict:
    from peft import get_peft_model_state_dict

    seed_everything(seed)
    student = method.add_lora(copy.deepcopy(tagger), cfg.dape.lora_r, cfg.dape.lora_alpha)
    t = replace(cfg.dape.train, seed=seed)
    res = train(method.DAPE(tagger, student), dape_forward, [pairs.hr, pairs.lr_up], t,
                resolve(cfg, cfg.paths.runs, PAPER, f"dape-seed{seed}", "checkpoints"), desc=f"{PAPER} dape {seed}",
                use_ema=False, run_fingerprint=fingerprint({**to_dict(cfg.dape), "seed": seed},
                                                          [__file__, method.__file__]))
    path = dape_path(cfg, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(get_peft_model_state_dict(res.model.student), tmp)
    trainable = [n for n, p in res.model.student.named_parameters() if p.requires_grad]
    rec = {"train_seed": seed, "seconds": res.train_seconds, "final_loss": res.history[-1]["loss"],
           "lora_params": sum(p.numel() for p in res.model.student.parameters() if p.requires_grad),
           "trainable_names": len(trainable)}
    log_run(cfg, PAPER, "dape", {"arm": "lora", **to_dict(cfg.dape)}, rec, seed=seed, history=res.history)
    return {**rec, "history": res.history}


def main(argv=None):
    cfg = load_config(SeeSRConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    from papers.seesr.backbone import refuse_full

    refuse_full(cfg)
    pairs, t0 = read_pairs(cfg, "train"), time.time()
    tag = train_tagger(cfg, pairs)
    tagger = load_tagger(cfg)
    runs = [train_dape(cfg, pairs, tagger, s) for s in cfg.train_seeds]
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "dape.json") as tmp:
        tmp.write_text(json.dumps({"tagger": tag, "runs": runs, "dape_seconds": time.time() - t0}, indent=1))
    read_json(out / "dape.json")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
