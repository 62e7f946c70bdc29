"""The compared backbones as training steps: each paper's network and loss, its training batch, its FLOPs per step.

Every backbone is built from its own paper's configuration, never re-tuned here:
  DiT       root params `dit` (root stage train_dit): EDM loss, class labels
  MaskDiT   papers/maskdit params: the DiT encoder at mask ratio r plus the MAE decoder (DSM + lambda MAE)
  Flag-DiT  papers/lumina_flag_dit params `net`, `train`, `t_dist`: flow matching, digit-name captions
  UNet      root params `base_model` (root stage train_base_model): DDPM eps loss, class labels (a reference)
The FLOPs of one optimizer step (forward + backward at the backbone's training batch) are counted on meta
tensors by torch's FlopCounterMode (common.dit.flops_per_step): shapes only, so they are exact and deterministic.
Equal training compute on this page means equal FLOPs: a budget of k DiT steps is k x FLOPs(DiT step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

from common.diffusion import NoiseSchedule, denoising_loss, unet_fn
from common.dit import dit_net, flops_per_step
from common.edm import EDM, edm_loss
from common.flow_matching import flow_matching_loss
from common.models import build_unet
from common.stages import train_dit
from papers.lumina_flag_dit import method as flag
from papers.lumina_flag_dit.train import ARMS, build_net
from papers.maskdit import method as maskdit
from papers.maskdit.train import build as build_maskdit

FLAG_ARM = next(a for a in ARMS if a.name == "flag")  # RoPE with [nextline], QK-norm: the paper's Flag-DiT

Loss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Backbone:
    name: str
    build: Callable[[bool], torch.nn.Module]   # build(meta) -> the network (meta=True: shapes only)
    loss: Callable[[float], Loss]              # loss(cond_dropout) -> loss(model, x, y, generator)
    batch_size: int                            # its paper's training batch
    cond_dropout: float


def backbones(cfg, mask_cfg, flag_cfg, channels: int) -> Dict[str, Backbone]:
    """{name: Backbone}: cfg = this page's config (root `dit`, `base_model`), mask_cfg / flag_cfg the papers'."""
    res = cfg.data.resolution
    edm, dc = EDM.from_config(cfg.dit.edm), cfg.dit
    pre, null = edm.preconditioner(), dc.net.num_classes
    tok = flag.CaptionTokenizer(flag_cfg.captions)
    schedule, bm = NoiseSchedule.from_config(cfg.base_model.diffusion), cfg.base_model

    def dit_loss(p):
        return lambda m, x, y, g: edm_loss(dit_net(m), edm, x, y, g, p, null, pre)

    def maskdit_loss(p):
        return lambda m, x, y, g: maskdit.maskdit_loss(m, edm, x, y, g, mask_cfg.mask_ratio, mask_cfg.mae_coef, p,
                                                       pre).total

    def flag_loss(p):
        def loss(m, x, y, g):
            drop = flag.caption_dropout(y, p, g) if p > 0 else None
            return flow_matching_loss(flag.flag_dit_velocity(m, tok, y, drop), x, g, flag_cfg.t_dist)
        return loss

    def unet_loss(p):
        return lambda m, x, y, g: denoising_loss(unet_fn(m), schedule, x, y, g, p, bm.unet.num_classes)

    def flag_net(meta):
        if not meta:
            return build_net(flag_cfg, FLAG_ARM, channels)
        with torch.device("meta"):
            return build_net(flag_cfg, FLAG_ARM, channels)

    return {
        "DiT": Backbone("DiT", lambda meta: train_dit.build(cfg, channels, meta=meta), dit_loss,
                        dc.train.batch_size, dc.train.cond_dropout),
        "MaskDiT": Backbone("MaskDiT", lambda meta: build_maskdit(mask_cfg, channels, meta=meta), maskdit_loss,
                            mask_cfg.dit.train.batch_size, mask_cfg.dit.train.cond_dropout),
        "Flag-DiT": Backbone("Flag-DiT", flag_net, flag_loss, flag_cfg.train.batch_size, flag_cfg.train.cond_dropout),
        "UNet": Backbone("UNet", lambda meta: build_unet(bm.unet, res, channels, meta=meta), unet_loss,
                         bm.train.batch_size, bm.train.cond_dropout),
    }


def step_flops(b: Backbone, channels: int, res: int) -> int:
    """FLOPs of one training step of `b` at its training batch (meta tensors, no dropout: shapes only)."""
    x = torch.zeros(b.batch_size, channels, res, res, device="meta")
    y = torch.zeros(b.batch_size, dtype=torch.long, device="meta")
    model = b.build(True)
    return flops_per_step(lambda: b.loss(0.0)(model, x, y, torch.Generator()))


def steps_at_budgets(budgets: List[int], dit_flops: int, flops: int) -> List[int]:
    """Optimizer steps of a backbone that cost the FLOPs of each budget (in DiT steps), rounded to the nearest."""
    return [max(1, round(b * dit_flops / flops)) for b in budgets]
