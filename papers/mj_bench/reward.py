"""The replication unit's own reward model: a Bradley-Terry head trained with the unit's seed.

The paper's claim that a reward model trained on human preferences judges alignment better than a raw CLIP score
should hold over reward-model training, not only over benchmark items. Each unit therefore trains the shared
judge (common.judges.RewardHead on frozen scene-CLIP features, the recipe of root stage train_reward_model and its
`reward_model` params) with its own seed on preference pairs of the TRAINING digits; the benchmark's items come
from the held-out digits. The root stage's model stays in the table as a reference row (`reward_model[root]`).
"""

from pathlib import Path

import torch

from common.config import budget_config, resolve
from common.judges import RewardHead, RewardModel, bradley_terry_loss, preference_pairs
from common.training import train


def train_unit_reward_model(cfg, clip_model, tok, train_bank, seed: int, n_pairs: int) -> RewardModel:
    """A RewardModel whose head is trained on `n_pairs` training-digit pairs drawn and initialised with `seed`."""
    r = cfg.reward_model
    torch.manual_seed(seed)
    pairs = preference_pairs(train_bank, n_pairs, 50_000 + seed)
    judge = RewardModel(clip_model, tok, cfg.scene_clip.model.context_length,
                        RewardHead(cfg.scene_clip.model.embed_dim, r.hidden))
    with torch.no_grad():  # frozen features of both images of each pair, computed once
        (f_c, t), (f_r, _) = (judge.features(pairs[k], pairs["prompt"]) for k in ("chosen", "rejected"))
    opt = dict(batch_size=r.batch_size, lr=r.lr, weight_decay=r.weight_decay, lr_schedule="cosine", warmup_steps=20)
    tc = budget_config(r.steps, seed=seed, **opt)
    ckpt = Path(resolve(cfg, cfg.paths.runs, "mj_bench", f"reward_seed{seed}"))
    res = train(judge.head, _pair_loss, (f_c, f_r, t), tc, ckpt, desc=f"reward_model seed {seed}", use_ema=False)
    judge.head = res.model.eval()
    return judge


def _pair_loss(head, f_chosen, f_rejected, text, generator):
    """Bradley-Terry: -log sigmoid(r(chosen) - r(rejected)) on the frozen features."""
    return bradley_terry_loss(head(f_chosen, text), head(f_rejected, text))
