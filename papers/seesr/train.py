"""Stage `train`: the SR model per arm and training seed (common/arms.py), on the frozen pre-trained UNet.

The frozen UNet and text encoder are the shared T2I model's (root stage train_t2i, papers/seesr/backbone.py).
Arms: `seesr` = ControlNet (from the UNet, input LR_up) + text path (the frozen text tower's token states of the tags
prompt; the GT tags, as the official trains on tags RAM extracted from the GT: issue #11) + image path (DAPE
embeddings of LR_up from the LoRA student of the same seed, through the new image cross-attentions), null prompt
with probability sr.cond_dropout (official null_text_ratio 0.5); `no_prompt` = the same ControlNet with the null
text always and no image attention. Same initialisation, data order and noise draws per seed in both arms.
Writes models/seesr/sr/<arm>-seed<s>.pt and reports/seesr/train.json.
"""

import copy
import sys
from dataclasses import replace

import torch

from common.arms import train_arms
from common.atomic import atomic_file
from common.config import load_config, reading, require, resolve, to_dict
from common.seeding import seed_everything
from common.training import fingerprint, train
from papers.seesr import method
from papers.seesr.backbone import Backbone, refuse_full
from papers.seesr.config import SeeSRConfig
from papers.seesr.dape import load_dape, load_tagger
from papers.seesr.data import read_pairs

PAPER = "seesr"
STAGE = f"papers/{PAPER}/dvc.yaml:train"
ARMS = ("seesr", "no_prompt")


def build_sr(cfg, unet) -> method.SeeSR:
    return method.SeeSR(unet, cfg.tagger.embed_dim, cfg.control.image_heads, cfg.t2i.unet.norm_num_groups,
                        cfg.control.cond_channels)


def sr_path(cfg, arm: str, seed: int):
    return resolve(cfg, cfg.paths.models, PAPER, "sr", f"{arm}-seed{seed}.pt")


def load_sr(cfg, arm: str, seed: int, unet) -> method.SeeSR:
    model = build_sr(cfg, copy.deepcopy(unet))  # the surgery edits the UNet
    path = require(sr_path(cfg, arm, seed), STAGE)
    with reading(path, STAGE):
        model.load_state_dict(torch.load(path))
    return model.eval().requires_grad_(False)


@torch.no_grad()
def embed(tagger, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """DAPE's soft prompt e [N, tokens, embed_dim] and tag probabilities [N, tags] of images x."""
    out = [tagger(x[i:i + batch]) for i in range(0, len(x), batch)]
    return torch.cat([o[0] for o in out]), torch.sigmoid(torch.cat([o[1] for o in out]))


class SRLoss(torch.nn.Module):
    """eps-MSE of an arm: the seesr arm drops text AND keeps the image path as the official (null text only)."""

    def __init__(self, model: method.SeeSR, null_text, p_null: float, prompts: bool):
        super().__init__()
        self.model, self.p_null, self.prompts = model, p_null, prompts
        self.register_buffer("null_text", null_text)
        self.scheduler = method.sd_scheduler()

    def forward(self, x0, lr_up, text, image, gen):
        drop = (torch.rand(len(x0), generator=gen) < self.p_null).to(x0.device)
        if not self.prompts:
            drop, image = torch.ones_like(drop), None
        text = torch.where(drop[:, None, None], self.null_text.expand_as(text), text)
        return method.eps_loss(self.model, x0, lr_up, text, image, self.scheduler, gen)


def train_one(cfg, arm: str, seed: int, pairs, text, null, unet, tagger) -> dict:
    e = embed(load_dape(cfg, seed, tagger), pairs.lr_up)[0]
    seed_everything(seed)
    model = SRLoss(build_sr(cfg, copy.deepcopy(unet)), null, cfg.sr.cond_dropout, arm == "seesr")
    t = replace(cfg.sr, seed=seed)
    res = train(model, lambda m, x, lr, c, im, g: m(x, lr, c, im, g), [pairs.hr, pairs.lr_up, text, e], t,
                resolve(cfg, cfg.paths.runs, PAPER, f"{arm}-seed{seed}", "checkpoints"), desc=f"{PAPER} {arm} {seed}",
                use_ema=False, run_fingerprint=fingerprint({"arm": arm, **to_dict(t), "control": to_dict(cfg.control)},
                                                          [__file__, method.__file__]))
    path = sr_path(cfg, arm, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(res.model.model.state_dict(), tmp)
    sr = res.model.model
    return {"arm": arm, "train_seed": seed, "steps": res.steps, "seconds": res.train_seconds,
            "final_loss": res.history[-1]["loss"], "controlnet_params": sum(p.numel() for p in sr.controlnet.parameters()),
            "image_attention_params": sum(p.numel() for p in sr.unet_image_attentions.parameters()),
            "unet_params": sum(p.numel() for n, p in sr.unet.named_parameters() if ".image." not in n),
            "history": res.history}


def main(argv=None):
    cfg = load_config(SeeSRConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    refuse_full(cfg)
    pairs, sd = read_pairs(cfg, "train"), Backbone(cfg)
    text, null = sd.text([method.tag_prompt(t) for t in pairs.tags]), sd.null()
    tagger = load_tagger(cfg)
    train_arms(cfg, PAPER, cfg.arms, lambda arm, seed: train_one(cfg, arm, seed, pairs, text, null, sd.unet, tagger),
               lambda arm: {"sr": to_dict(cfg.sr)})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
