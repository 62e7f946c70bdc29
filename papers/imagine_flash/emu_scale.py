"""The full profile's network: Emu is not public, so the paper-scale student / teacher is an SDXL-scale latent UNet
(diffusers UNet2DConditionModel with SDXL-base's configuration: 2,567,463,684 parameters), wrapped so that it is
called like the shared teacher (model(x, t, class_labels).sample): the condition is a label whose text-encoder
outputs stand in for a prompt's (a GPU user replaces `LabelText` by real text-encoder outputs, README "GPU runbook").

Everything of method.py runs unchanged on it (tests/papers/test_imagine_flash.py: the count on the meta device,
two training steps of a reduced instance at batch 1 on the CPU through method.distillation_loss).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

# SDXL-base 1.0's unet/config.json (the fields that differ from diffusers' defaults)
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)
SDXL_UNET_PARAMS = 2_567_463_684  # diffusers' UNet2DConditionModel(**SDXL_UNET), counted on the meta device
SDXL_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


class LabelText(nn.Module):
    """Stand-in for the text encoders: label -> (token embeddings [N, tokens, 2048], pooled [N, 1280])."""

    def __init__(self, num_classes: int, tokens: int, dim: int, pooled: int):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.table = nn.Embedding(num_classes + 1, tokens * dim)
        self.pooled = nn.Embedding(num_classes + 1, pooled)

    def forward(self, label):
        return self.table(label).view(-1, self.tokens, self.dim), self.pooled(label)


class TextConditionedUNet(nn.Module):
    """UNet2DConditionModel called as model(x, t, class_labels) -> output with `.sample` (SDXL's micro-conditioning
    time ids: original size, crop offset, target size of a square image of `resolution` px)."""

    def __init__(self, unet, text: LabelText, resolution: int):
        super().__init__()
        self.unet, self.text = unet, text
        self.register_buffer("time_ids", torch.tensor([resolution, resolution, 0, 0, resolution, resolution],
                                                      dtype=torch.float32))

    def forward(self, x, t, class_labels=None):
        tokens, pooled = self.text(class_labels)
        ids = self.time_ids.expand(x.shape[0], -1)
        return self.unet(x, t, encoder_hidden_states=tokens, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids})


def build_unet(meta: bool = False, **overrides):
    """SDXL-base's UNet (with `overrides`, e.g. a reduced depth), on the meta device if `meta`."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta") if meta else nullcontext():
        return UNet2DConditionModel(**{**SDXL_UNET, **overrides})


def build(num_classes: int, tokens: int = 4, meta: bool = False, **overrides) -> TextConditionedUNet:
    unet = build_unet(meta, **overrides)
    c = unet.config
    with torch.device("meta") if meta else nullcontext():
        text = LabelText(num_classes, tokens, c.cross_attention_dim,
                         c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim)
        return TextConditionedUNet(unet, text, 8 * c.sample_size)
