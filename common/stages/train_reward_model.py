"""Root stage `train_reward_model`: a Bradley-Terry reward model on frozen scene-CLIP features (common/judges.py).

Preference pairs come from the scene generator (common/scenes.py), rendered from the same digit split as
build_scenes: training pairs from the TRAINING digits, test pairs from the held-out digits. Each pair has one
prompt (a clean caption); the chosen image renders it, the rejected one differs in one attribute (digit,
colour, count, position) or is a degraded copy (blur / noise), the kinds in equal shares. The head (an MLP on
the L2-normalised image and text features) is trained with -log sigmoid(s_chosen - s_rejected) by the shared
Accelerate loop. Writes models/reward_model (head.pt + meta.json) and metrics/reward_model.json: pairwise
accuracy on the test pairs per rejection kind for the reward model, the raw CLIP score and the oracle
(ground truth; the oracle ties on degraded copies, counted as wrong).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

import common.judges
import common.training
from common.clip import build_tokenizer, load_clip
from common.config import RootConfig, budget_config, load_config, resolve, to_dict
from common.data import SOURCES, split_indices
from common.judges import (
    REJECT_KINDS,
    ClipJudge,
    OracleJudge,
    RewardHead,
    RewardModel,
    bradley_terry_loss,
    preference_pairs,
)
from common.scenes import DigitBank
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train


def digit_banks(cfg):
    """(training bank, held-out bank): the digit split build_scenes draws its splits from."""
    x, y = SOURCES[cfg.scenes.source](None)
    x = x[:, 0] if x.ndim == 4 else x
    tr, ho = split_indices(y, cfg.scenes.heldout_digits, cfg.scenes.seed)
    return DigitBank(x[tr], y[tr]), DigitBank(x[ho], y[ho])


def pairwise_accuracy(judge, pairs: dict) -> dict:
    """Share of pairs where the judge scores the chosen image strictly above the rejected one, per kind."""
    truth = {"truth_c": pairs["chosen_truth"], "truth_r": pairs["rejected_truth"]}
    use_truth = isinstance(judge, OracleJudge)
    s_c = judge(pairs["chosen"], pairs["prompt"], truth["truth_c"] if use_truth else None)
    s_r = judge(pairs["rejected"], pairs["prompt"], truth["truth_r"] if use_truth else None)
    win = (s_c > s_r).numpy()
    kinds = np.asarray(pairs["kind"])
    out = {f"{judge.name}_acc_{k}": float(win[kinds == k].mean()) for k in REJECT_KINDS if (kinds == k).any()}
    out[f"{judge.name}_acc_all"] = float(win.mean())
    return out


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    r = cfg.reward_model
    seed_everything(r.seed)
    tok = build_tokenizer()
    ctx = cfg.scene_clip.model.context_length
    clip_model = load_clip(resolve(cfg, cfg.paths.models, "scene_clip"), cfg.scene_clip.model, tok, "train_scene_clip")
    train_bank, test_bank = digit_banks(cfg)
    train_pairs = preference_pairs(train_bank, r.train_pairs, r.seed * 1000 + 1)
    test_pairs = preference_pairs(test_bank, r.test_pairs, r.seed * 1000 + 2)
    head = RewardHead(cfg.scene_clip.model.embed_dim, r.hidden)
    judge = RewardModel(clip_model, tok, ctx, head)
    with torch.no_grad():  # frozen features, computed once
        f_c, t = judge.features(train_pairs["chosen"], train_pairs["prompt"])
        f_r, _ = judge.features(train_pairs["rejected"], train_pairs["prompt"])

    def loss_fn(h, fc, fr, tt, gen):
        return bradley_terry_loss(h(fc, tt), h(fr, tt))

    tc = budget_config(r.steps, batch_size=r.batch_size, lr=r.lr, lr_schedule="cosine", weight_decay=r.weight_decay,
                       seed=r.seed, warmup_steps=20)
    d = to_dict(cfg)
    identity = {"scenes": d["scenes"], "scene_clip": d["scene_clip"], "reward_model": d["reward_model"]}
    res = train(head, loss_fn, (f_c, f_r, t), tc, resolve(cfg, cfg.paths.runs, "reward_model", "checkpoints"),
                desc="reward_model", use_ema=False,
                run_fingerprint=fingerprint(identity, [Path(__file__), Path(common.judges.__file__),
                                                       Path(common.training.__file__)]))
    if not res.is_main_process:
        return
    judge.head = res.model.eval()
    metrics = {"train_seconds": res.train_seconds, "steps": res.steps, "train_pairs": r.train_pairs,
               "test_pairs": r.test_pairs, "final_loss": res.history[-1]["loss"] if res.history else float("nan"),
               "head_params": sum(p.numel() for p in head.parameters())}
    for j in (judge, ClipJudge(clip_model, tok, ctx), OracleJudge()):
        metrics.update(pairwise_accuracy(j, test_pairs))
    out = resolve(cfg, cfg.paths.models, "reward_model")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(judge.head.state_dict(), out / "head.pt")
    (out / "meta.json").write_text(json.dumps({"config": d["reward_model"], "embed_dim": cfg.scene_clip.model.embed_dim,
                                               "metrics": metrics}, indent=2))
    path = resolve(cfg, "metrics", "reward_model.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    log_run(cfg, "shared", "train_reward_model", identity, metrics, seed=r.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
