"""Stage `pretrain`: the text-to-image UNet that SeeSR controls (SD-2-base's role), trained once on HR scenes.

SeeSR starts from a pre-trained T2I model and freezes it; ours is a small pixel-space diffusers
UNet2DConditionModel (the paper works in SD's 4x64x64 latent space; at 32x32 we skip the VAE) trained here with
eps-MSE on the HR training scenes, conditioned on the scene CLIP's token states of the tag prompt, the prompt
dropped to the null prompt with probability unet.train.cond_dropout (text-to-image CFG training). It is frozen
afterwards. Writes models/seesr/unet (diffusers save_pretrained) and reports/seesr/pretrain.json.
"""

import json
import sys

import torch

from common.atomic import atomic_file, write_dir_atomic
from common.config import UserError, load_config, reading, require, resolve, to_dict
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train
from papers.seesr import method
from papers.seesr.config import SeeSRConfig
from papers.seesr.data import TextEncoder, read_pairs

PAPER = "seesr"
STAGE = f"papers/{PAPER}/dvc.yaml:pretrain"


def refuse_full(cfg):
    """The full profile needs SD-2-base, RAM Swin-L and LSDIR / FFHQ (README, GPU runbook): not wired yet."""
    if cfg.sd is not None:
        raise UserError("papers/seesr: the full profile is not runnable yet: it needs the SD-2-base weights "
                        "(stabilityai/stable-diffusion-2-base), RAM Swin-L (ram_swin_large_14m.pth), a VAE latent "
                        "space and LSDIR + FFHQ-10k crops; the parameter counts are checked by "
                        "tests/papers/test_seesr.py on the meta device")


def build_unet(cfg, meta: bool = False):
    """UNet2DConditionModel at the cpu size (cfg.unet) or, with cfg.sd (full profile), SD-2-base's config."""
    from contextlib import nullcontext

    from diffusers import UNet2DConditionModel

    with torch.device("meta") if meta else nullcontext():
        if cfg.sd is not None:
            s = cfg.sd
            n = len(s.block_out_channels)
            return UNet2DConditionModel(
                sample_size=s.sample_size, in_channels=s.latent_channels, out_channels=s.latent_channels,
                block_out_channels=tuple(s.block_out_channels), layers_per_block=s.layers_per_block,
                attention_head_dim=tuple(s.attention_head_dim), cross_attention_dim=s.cross_attention_dim,
                use_linear_projection=True, down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))
        u = cfg.unet
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in u.attention_levels)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(u.attention_levels))
        return UNet2DConditionModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=tuple(u.block_out_channels),
            down_block_types=down, up_block_types=up, layers_per_block=u.layers_per_block,
            cross_attention_dim=cfg.scene_clip.model.text_width, attention_head_dim=u.attention_head_dim,
            norm_num_groups=u.norm_num_groups)


def unet_dir(cfg):
    return resolve(cfg, cfg.paths.models, PAPER, "unet")


def load_unet(cfg):
    from diffusers import UNet2DConditionModel

    d = require(unet_dir(cfg), STAGE, marker="config.json")
    with reading(d, STAGE):
        return UNet2DConditionModel.from_pretrained(str(d)).eval()


class T2I(torch.nn.Module):
    """eps-MSE of the UNet alone with prompt dropout (the pre-training objective)."""

    def __init__(self, unet, null_text, p_null: float):
        super().__init__()
        self.unet, self.p_null = unet, p_null
        self.register_buffer("null_text", null_text)
        self.scheduler = method.sd_scheduler()

    def forward(self, x0, text, gen):
        drop = (torch.rand(len(x0), generator=gen) < self.p_null).to(x0.device)
        text = torch.where(drop[:, None, None], self.null_text.expand_as(text), text)
        t = torch.randint(0, 1000, (len(x0),), generator=gen).to(x0.device)
        eps = torch.randn(x0.shape, generator=gen).to(x0.device)
        x_t = self.scheduler.add_noise(x0, eps, t)
        return torch.nn.functional.mse_loss(self.unet(x_t, t, encoder_hidden_states=text).sample, eps)


def main(argv=None):
    cfg = load_config(SeeSRConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    refuse_full(cfg)
    pairs, enc = read_pairs(cfg, "train"), TextEncoder(cfg)
    text = enc([method.tag_prompt(t) for t in pairs.tags])
    seed_everything(cfg.unet.train.seed)
    model = T2I(build_unet(cfg), enc.null(), cfg.unet.train.cond_dropout)
    res = train(model, lambda m, x, c, g: m(x, c, g), [pairs.hr, text], cfg.unet.train,
                resolve(cfg, cfg.paths.runs, PAPER, "pretrain", "checkpoints"), desc=f"{PAPER} pretrain",
                use_ema=False, run_fingerprint=fingerprint(to_dict(cfg.unet), [__file__]))
    write_dir_atomic(unet_dir(cfg), res.model.unet.save_pretrained)
    rec = {"seconds": res.train_seconds, "final_loss": res.history[-1]["loss"], "steps": res.steps,
           "params": sum(p.numel() for p in res.model.unet.parameters())}
    log_run(cfg, PAPER, "pretrain", to_dict(cfg.unet), rec, seed=cfg.unet.train.seed, history=res.history)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "pretrain.json") as tmp:
        tmp.write_text(json.dumps({**rec, "pretrain_seconds": res.train_seconds, "history": res.history}, indent=1))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
