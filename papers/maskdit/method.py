"""MaskDiT -- Zheng, Nie, Vahdat, Anandkumar, "Fast Training of Diffusion Models with Masked Transformers",
TMLR 2024 (arXiv:2306.09305; official code Anima-Lab/MaskDiT).

Training cost of a transformer diffusion model grows with its token count. MaskDiT drops a random half of
the patch tokens of the noisy input before the transformer, so the encoder (the DiT's blocks) only sees
the visible tokens, and a small decoder restores the full sequence:

    tokens   h = PatchEmbed(c_in y) + pos                                  [N, L, D]   (L = (H/p)(W/p))
    mask     per sample, argsort of uniform noise; keep floor(L (1 - r)) tokens, r = 0.5
    encoder  h_v = DiT blocks(h[ids_keep], c)                              [N, L_keep, D]
    decoder  z = DecoderLayer(h_v) (LN + adaLN + linear D -> D_dec, zero-initialised)
             z = unshuffle([z, mask_token x (L - L_keep)]) + pos_dec       [N, L, D_dec]
             F = FinalLayer(DiT blocks_dec(z, c))                          [N, C, H, W]
    D(y; sigma) = c_skip y + c_out F                                       (EDM preconditioning, common/edm.py)

    L = L_DSM + lambda L_MAE,   lambda = 0.1                                (paper Sec. 3; official EDMLoss)
    L_DSM = mean over VISIBLE patches of  avgpool_patch( mean_c  lambda(sigma) (D - x)^2 )
    L_MAE = mean over MASKED patches of   mean_d ( D_p - (y_p - mu_p) / sqrt(var_p + 1e-6) )^2
            y_p: the patch of the NOISY input y = x + n (not the clean x), normalised per patch
            (mu_p, var_p: mean and unbiased variance of its p*p*C values), as the official mae_loss.

At inference, and during "unmask tuning" (a short final phase at r = 0, official lr 5e-5 = half the
pre-training lr), every token goes through encoder and decoder; no mask token is used.

What is shrunk or changed here (papers/maskdit/README.md): the encoder is the shared CPU-size DiT (common/dit.py,
diffusers' DiTTransformer2DModel; the paper's is DiT-XL/2); the decoder is `decoder.depth` blocks of width
`decoder.hidden_size` (official: 8 x 512, 16 heads, hard-coded), so that it stays a small share of the
encoder's compute as in the paper. The decoder is also a diffusers DiT: its blocks and final layer are
conditioned through their own timestep/label embedders at the decoder width (official: on the encoder's
1152-d condition c); the DecoderLayer is conditioned through encoder block 0's embedder.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn as nn

from common.dit import build_dit, embed_tokens, output_layer, patchify, run_blocks
from common.edm import EDM, denoise, draw_noise, drop_labels


# --------------------------------------------------------------------------- masking (official get_mask & co.)
class Mask(NamedTuple):
    ids_keep: torch.Tensor  # [N, L_keep] token indices the encoder sees
    ids_restore: torch.Tensor  # [N, L] position of each token in the shuffled order (argsort of the shuffle)
    mask: torch.Tensor  # [N, L] 0 = kept (visible), 1 = masked


def random_mask(n: int, length: int, ratio: float, generator: torch.Generator) -> Mask:
    """Per-sample random masking: argsort of U(0, 1) noise (small = keep), keep floor(L (1 - r)) tokens.
    The noise comes from the training loop's generator (the official code calls torch.rand)."""
    len_keep = int(length * (1 - ratio))
    noise = torch.rand((n, length), generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(n, length)
    mask[:, :len_keep] = 0
    return Mask(ids_shuffle[:, :len_keep], ids_restore, torch.gather(mask, 1, ids_restore))


def keep_tokens(h: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
    """[N, L, D] -> [N, L_keep, D]: the visible tokens, in the shuffled order."""
    return torch.gather(h, 1, ids_keep.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def insert_mask_tokens(h: torch.Tensor, ids_restore: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """[N, L_keep, D] -> [N, L, D]: append L - L_keep copies of the mask token and undo the shuffle."""
    n, keep, d = h.shape
    fill = mask_token.to(h.dtype).expand(n, ids_restore.shape[1] - keep, d)
    return torch.gather(torch.cat([h, fill], dim=1), 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))


# --------------------------------------------------------------------------- the network
class TokenPositions(nn.Module):
    """The decoder's input layer: add fixed 2-D sin-cos positions to a token sequence (the table of a diffusers
    PatchEmbed at the decoder width, i.e. the official decoder_pos_embed)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table, persistent=False)  # [1, L, D_dec], rebuilt on construction

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.table.to(tokens.dtype)


class MaskDiT(nn.Module):
    """Asymmetric encoder-decoder DiT. `forward(x, c_noise, labels, mask)` is the network F of EDM's
    D = c_skip y + c_out F(c_in y, c_noise, c): with a `Mask`, the encoder sees the visible tokens only;
    with mask=None (inference, unmask tuning) every token."""

    def __init__(self, encoder, decoder, mask_token: bool = True):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        d_enc, d_dec = encoder.inner_dim, decoder.inner_dim
        # DecoderLayer: the encoder's output layer (LN + adaLN) projecting to the decoder width, zero-initialised
        encoder.proj_out_2 = nn.Linear(d_enc, d_dec)
        nn.init.zeros_(encoder.proj_out_2.weight)
        nn.init.zeros_(encoder.proj_out_2.bias)
        # the decoder reads tokens: its patch embedding becomes "add the decoder's sin-cos positions"
        decoder.pos_embed = TokenPositions(decoder.pos_embed.pos_embed)
        # learned mask token, N(0, 0.02) (official: only when the MAE loss is on; zeros otherwise)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d_dec))
        if mask_token:
            nn.init.normal_(self.mask_token, std=0.02)

    @property
    def patch_size(self) -> int:
        return self.encoder.config.patch_size

    @property
    def null_class(self) -> int:
        """The label of the unconditional branch: the null row of the label tables."""
        return self.encoder.config.num_embeds_ada_norm

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor,
                mask: Optional[Mask] = None) -> torch.Tensor:
        h = embed_tokens(self.encoder, x)  # [N, L, D] patches + positions
        if mask is not None:
            h = keep_tokens(h, mask.ids_keep.to(h.device))  # [N, L_keep, D]
        h = run_blocks(self.encoder, h, c_noise, labels)  # encoder on the visible tokens
        z = output_layer(self.encoder, h, c_noise, labels)  # DecoderLayer: [N, L_keep, D_dec]
        if mask is not None:
            z = insert_mask_tokens(z, mask.ids_restore.to(z.device), self.mask_token)  # [N, L, D_dec]
        return self.decoder(z, timestep=c_noise, class_labels=labels).sample  # + pos_dec, blocks, final layer


def build_maskdit(net, decoder, resolution: int, channels: int, mae: bool = True, meta: bool = False) -> MaskDiT:
    """MaskDiT with the encoder `net` (a DitNetConfig: the DiT of the same width and depth) and `decoder`
    (hidden_size, depth, num_heads); `mae=False` leaves the mask token at zero, as the official code does."""
    enc = build_dit(net.hidden_size, net.depth, net.num_heads, net.patch_size, resolution, channels,
                    net.num_classes, meta=meta)
    dec = build_dit(decoder.hidden_size, decoder.depth, decoder.num_heads, net.patch_size, resolution, channels,
                    net.num_classes, meta=meta)
    with torch.device("meta") if meta else nullcontext():
        return MaskDiT(enc, dec, mask_token=mae)


def maskdit_net(model: MaskDiT, mask: Optional[Mask] = None):
    """F(x, c_noise, labels) of `model` with a fixed mask (None: every token) -- common.edm.NetFn."""
    return lambda x, c_noise, labels: model(x, c_noise, labels, mask)


# --------------------------------------------------------------------------- the loss
@dataclass
class Losses:
    total: torch.Tensor  # scalar: mean over the batch of L_DSM + lambda L_MAE
    dsm: torch.Tensor  # [N] per sample
    mae: torch.Tensor  # [N] per sample (0 when r = 0)


def dsm_loss(d: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: Optional[Mask], p: int) -> torch.Tensor:
    """L_DSM per sample [N]: lambda(sigma) (D - x)^2 averaged over channels and the pixels of each patch, then over
    the visible patches (r = 0: over the whole image)."""
    err = weight * (d - x) ** 2  # [N, C, H, W]
    if mask is None:
        return err.mean(dim=(1, 2, 3))
    per_patch = nn.functional.avg_pool2d(err.mean(dim=1), p).flatten(1)  # [N, L], row-major like the tokens
    visible = 1 - mask.mask.to(err.device)
    return (per_patch * visible).sum(1) / visible.sum(1)


def mae_loss(d: torch.Tensor, y: torch.Tensor, mask: Mask, p: int) -> torch.Tensor:
    """L_MAE per sample [N]: the denoiser output D on the masked patches against the NOISY input y = x + n,
    normalised per patch ((y_p - mu_p) / sqrt(var_p + 1e-6), unbiased var), averaged over the masked patches."""
    target, pred = patchify(y, p), patchify(d, p)  # [N, L, p*p*C]
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)  # [N, L]
    masked = mask.mask.to(d.device)
    return (per_patch * masked).sum(1) / masked.sum(1)


def maskdit_loss(model: MaskDiT, edm: EDM, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                 mask_ratio: float, mae_coef: float, cond_dropout: float, pre=None,
                 mask: Optional[Mask] = None) -> Losses:
    """L = L_DSM + mae_coef L_MAE on a batch. Draw order from the loop's generator: sigma, eps (common.edm.draw_noise),
    the condition dropout, then the mask (r > 0). `mask` overrides the drawn one (reference checks)."""
    pre = pre or edm.preconditioner()
    sigma, n = draw_noise(edm, x, generator)
    labels = drop_labels(labels, cond_dropout, model.null_class, generator)
    if mask is None and mask_ratio > 0:
        tokens = (x.shape[-2] // model.patch_size) * (x.shape[-1] // model.patch_size)
        mask = random_mask(x.shape[0], tokens, mask_ratio, generator)
    y = x + n
    d = denoise(maskdit_net(model, mask), pre, y, sigma, labels)
    dsm = dsm_loss(d, x, edm.weight(sigma), mask, model.patch_size)
    mae = mae_loss(d, y, mask, model.patch_size) if mask is not None and mae_coef > 0 else torch.zeros_like(dsm)
    return Losses((dsm + mae_coef * mae).mean(), dsm, mae)
