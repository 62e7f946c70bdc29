"""The frozen text-to-image model SeeSR controls (SD-2-base's role): the shared text-conditional scene model.

SeeSR starts from a pre-trained T2I model and freezes it. Ours is the repository's shared one, trained once by the
root stage `train_t2i` (common/t2i.py): a small pixel-space diffusers UNet2DConditionModel on the captioned scenes
(the paper works in SD's 4x64x64 latent space; at 32x32 we skip the VAE), cross-attending to the frozen scene
CLIP's per-token text states, with caption dropout for classifier-free guidance and Stable Diffusion's noise
schedule. This module loads its UNet and its text path and checks the schedule is SD's: the LRE start (Eq. 5)
and the abar_999 = 0.0046601 it relies on are SD's.

The full profile (`cfg.sd`) builds SD-2-base's UNet from its config on the meta device instead (no weights).
"""

from contextlib import nullcontext

import torch

from common.config import UserError, resolve

PAPER = "seesr"
T2I_STAGE = "dvc.yaml:train_t2i"
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def refuse_full(cfg):
    """The full profile needs SD-2-base, RAM Swin-L and LSDIR / FFHQ (README, GPU runbook): not wired yet."""
    if cfg.sd is not None:
        raise UserError("papers/seesr: the full profile is not runnable yet: it needs the SD-2-base weights "
                        "(stabilityai/stable-diffusion-2-base), RAM Swin-L (ram_swin_large_14m.pth), a VAE latent "
                        "space and LSDIR + FFHQ-10k crops; the parameter counts are checked by "
                        "tests/papers/test_seesr.py on the meta device")


def build_sd_unet(cfg, meta: bool = False):
    """SD-2-base's UNet2DConditionModel from its config values (cfg.sd, full profile), random or on the meta device."""
    from diffusers import UNet2DConditionModel

    s = cfg.sd
    n = len(s.block_out_channels)
    with torch.device("meta") if meta else nullcontext():
        return UNet2DConditionModel(
            sample_size=s.sample_size, in_channels=s.latent_channels, out_channels=s.latent_channels,
            block_out_channels=tuple(s.block_out_channels), layers_per_block=s.layers_per_block,
            attention_head_dim=tuple(s.attention_head_dim), cross_attention_dim=s.cross_attention_dim,
            use_linear_projection=True, down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1))


class Backbone:
    """The shared T2I model, frozen: `unet` (deep-copy it before the SR surgery) and `text(prompts)`, the
    per-token states [N, L, width] of the frozen scene-CLIP text tower (SD's `encoder_hidden_states`)."""

    def __init__(self, cfg):
        from common.t2i import load_t2i

        model, schedule = load_t2i(resolve(cfg, cfg.paths.models, "t2i"), cfg, T2I_STAGE)
        if schedule.diffusers_config != SD_SCHEDULE:
            raise UserError(f"params.yaml: t2i.diffusion is {schedule.diffusers_config}; SeeSR's LRE start needs "
                            f"Stable Diffusion's schedule {SD_SCHEDULE}; set it and rerun dvc repro {T2I_STAGE}")
        model.requires_grad_(False)
        self.unet, self.prompt_encoder = model.unet, model.text

    @torch.no_grad()
    def text(self, prompts, batch: int = 1000) -> torch.Tensor:
        return torch.cat([self.prompt_encoder.hidden(prompts[i:i + batch]) for i in range(0, len(prompts), batch)])

    def null(self) -> torch.Tensor:
        """The empty prompt's states [1, L, width] (the null / negative prompt)."""
        return self.text([""])
