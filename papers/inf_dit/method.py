"""Inf-DiT -- Yang et al., "Inf-DiT: Upsampling Any-Resolution Image with Memory-Efficient Diffusion Transformer",
ECCV 2024 (arXiv:2405.04312); official code THUDM/Inf-DiT (now zai-org/Inf-DiT) at commit e710c3f, dit/model.py
(AdaLNMixin, DiffusionEngine) and dit/embeddings.py (RotaryPositionEmbedding).

A pixel-space EDM diffusion transformer for super-resolution whose attention is block-causal, so an image of any
size can be generated one block at a time with a cache of one row of blocks. In the paper's / official names:

- Denoiser (precond_forward, dit/precond.py EDMPrecond; common/edm.py): D(x; sigma) = c_skip x + c_out F([c_in x,
  up(LR)], c_noise), sigma_data 0.5, c_noise = ln(sigma) / 4; training sigma ~ logN(-1.0, 1.4^2) (EDMSampling in
  configs/text2image-sr.yaml), loss lambda(sigma) ||D - x||^2 (EDMWeighting). up(LR) is the bicubic upsampling of
  the low-resolution image, concatenated as extra input channels (ConcatSRLoss2 `concat_lr_imgs`).
- Network: patch embedding (Conv, patch p) of the 2C input channels; L pre-LN blocks with adaLN WITHOUT gates
  (`--nogate`: [shift, scale] x 2 from a zero-initialised linear of SiLU(c)); per-head LayerNorm of q and k
  (`--qk-ln`); 2-D RoPE; an MLP (GELU, tanh approximation, 4x); the final layer LN + adaLN + linear to p^2 C.
  Condition c = SiLU(t_emb(c_noise) + map_vector(e(LR))) (model_forward, ConditionEmbedding).
- 2-D EVA RoPE (RotaryPositionEmbedding, pix2struct=True): the first half of each head's d_h channels is rotated
  by the token's ROW, the second half by its COLUMN; within a half, pairs (2i, 2i+1) are rotated by angle
  pos * 10^4^(-2i / (d_h / 2)) (`rotate_half` on interleaved pairs). Training shifts the positions by one random
  offset U{0..7 S} per axis (S = the training grid, `--random-position`), so larger images stay in range.
- Unidirectional Block Attention, UniBA (attention_forward, get_cat_layer_left_top): the token grid is cut into
  B x B-token blocks; the queries of block (i, j) attend to the keys / values of the blocks
  [self, top-left, left, top] = [(i, j), (i-1, j-1), (i, j-1), (i-1, j)], concatenated in that order. Out-of-range
  neighbours are CLAMPED to the nearest block of the grid (the block grid is replicate-padded at the top and
  left): block (0, 0) attends to itself four times, a block of the first row uses itself as "top". Nothing is
  masked. A learned re-position embedding per layer, 4 segments x heads x d_h (`re_pos_embed`, zeros at init),
  is added to the keys of each segment.
- Nearby-LR cross-attention (process_lr, cross_attention_forward, layer 0 only, `--cross-lr`): Conv(C -> D, k 2,
  s 2) on the LR pixels; the queries of each block attend to the LR tokens of its 3 x 3 block neighbourhood
  (Unfold, zero padding), with learned absolute position embeddings added to q (B^2) and k (9 b^2), qk-LN.
- Generation modes (DiffusionEngine.precond_forward): 'full' runs the network once over all blocks; 'ar' runs it
  block by block in raster order at EVERY denoising step, keeping per layer the K/V of one row of blocks plus the
  left block (W_blocks + 1 blocks): its memory grows with the image width and not with its height.

Toy-scale choices (README "What differs"): the image embedding e(LR) is a small learned conv encoder with average
pooling (the official uses a frozen OpenCLIP image embedding of the LR image, 768-d); the keys' LayerNorm is its
own (the official self-attention applies `q_layer_norm` to the keys too and never uses `k_layer_norm`); the LR
channels enter unscaled (the official multiplies all 2C input channels by c_in); 'ar' keeps the training border
rule (the official 'ar' path concatenates [self, top, top-left, left] and OMITS missing neighbours, which matches
neither the training order of the re-position segments nor its clamping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

SEGMENTS = ("self", "top-left", "left", "top")  # the UniBA key order (get_cat_layer_left_top)


# --------------------------------------------------------------------------- the SR input
def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR image: bicubic downsampling with antialiasing (torch's interpolate), [N, C, H, W] -> [N, C, H/s, W/s]."""
    return F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)


def upsample(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """up(LR): bicubic upsampling back to the HR grid, the network's extra input channels."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


# --------------------------------------------------------------------------- 2-D EVA RoPE
def rope_2d(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [..., d_h] of 2-D RoPE at integer positions pos [..., 2] = (row, col).

    Half dim = d_h / 2 per axis; frequencies theta^(-2i / half) for i < half / 2, each repeated for its pair
    (2i, 2i+1); the row angles fill channels [0, half), the column angles [half, d_h) (official freqs_cos[r, c])."""
    half = head_dim // 2
    inv = 1.0 / theta ** (torch.arange(0, half, 2, dtype=torch.float32)[: half // 2] / half)
    ang = pos.to(torch.float32)[..., None] * inv  # [..., 2, half/2]
    ang = ang.repeat_interleave(2, dim=-1).flatten(-2)  # [..., d_h]: row pairs, then column pairs
    return ang.cos(), ang.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x_{2i}, x_{2i+1}) -> (-x_{2i+1}, x_{2i}) on interleaved pairs."""
    x = x.unflatten(-1, (-1, 2))
    return torch.stack((-x[..., 1], x[..., 0]), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., T, heads, d_h] rotated by (cos, sin) [..., T, d_h] (broadcast over heads)."""
    return x * cos.unsqueeze(-2) + rotate_half(x) * sin.unsqueeze(-2)


def token_positions(h: int, w: int, offset: Tuple[int, int] = (0, 0), row0: int = 0, col0: int = 0) -> torch.Tensor:
    """(row, col) [h, w, 2] of a grid of tokens whose top-left token is (row0, col0), shifted by `offset`."""
    r = torch.arange(row0, row0 + h) + offset[0]
    c = torch.arange(col0, col0 + w) + offset[1]
    return torch.stack(torch.meshgrid(r, c, indexing="ij"), dim=-1)


# --------------------------------------------------------------------------- UniBA
def to_blocks(x: torch.Tensor, b: int) -> torch.Tensor:
    """[N, h, w, *f] token grid -> [N, h/b, w/b, b*b, *f] blocks of b x b tokens (row-major inside a block)."""
    n, h, w = x.shape[:3]
    x = x.reshape(n, h // b, b, w // b, b, *x.shape[3:]).transpose(2, 3)
    return x.reshape(n, h // b, w // b, b * b, *x.shape[5:])


def from_blocks(x: torch.Tensor, b: int) -> torch.Tensor:
    """Inverse of `to_blocks`: [N, bh, bw, b*b, *f] -> [N, bh b, bw b, *f]."""
    n, bh, bw = x.shape[:3]
    x = x.reshape(n, bh, bw, b, b, *x.shape[4:]).transpose(2, 3)
    return x.reshape(n, bh * b, bw * b, *x.shape[5:])


def cat_left_top(x: torch.Tensor) -> torch.Tensor:
    """UniBA keys of every block: [N, bh, bw, T, ...] -> [N, bh, bw, 4T, ...], segments [self, top-left, left, top].

    The block grid is replicate-padded by one block at the top and at the left (get_cat_layer_left_top), so a
    neighbour outside the grid is the nearest block inside it: block (i, j)'s top-left is (max(i-1, 0), max(j-1, 0))."""
    bh, bw = x.shape[1:3]
    pad = torch.cat([x[:, :1], x], dim=1)
    pad = torch.cat([pad[:, :, :1], pad], dim=2)  # [N, bh+1, bw+1, T, ...]
    return torch.cat([x, pad[:, :bh, :bw], pad[:, 1:, :bw], pad[:, :bh, 1:]], dim=3)


def neighbour_blocks(i: int, j: int) -> List[Tuple[int, int]]:
    """The four blocks [self, top-left, left, top] that block (i, j) attends to, clamped into the grid."""
    return [(i, j), (max(i - 1, 0), max(j - 1, 0)), (i, max(j - 1, 0)), (max(i - 1, 0), j)]


def add_re_pos(k4: torch.Tensor, re_pos: torch.Tensor) -> torch.Tensor:
    """Keys of the 4 segments [..., 4T, heads, d_h] + the re-position embedding re_pos [4, heads, d_h] of their
    segment (attention_forward: re_pos_embed[layer].repeat_interleave(T))."""
    return k4 + re_pos.repeat_interleave(k4.shape[-3] // len(SEGMENTS), dim=0)


class RowCache:
    """'ar' generation's K/V cache of ONE layer: the blocks of the previous block row not yet passed (`row[j]`)
    and the block to the left. When block (i, j) is generated it holds the previous row's blocks j-1 .. W_b-1 and
    the current row's blocks 0 .. j-1: W_b + 1 blocks. `get` applies the training border rule (clamping)."""

    def __init__(self, width_blocks: int):
        self.row: List[Optional[Tuple[torch.Tensor, torch.Tensor]]] = [None] * width_blocks
        self.left: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self.max_blocks = 0

    def held(self) -> int:
        return sum(e is not None for e in self.row) + (self.left is not None)

    def get(self, i: int, j: int, own: Tuple[torch.Tensor, torch.Tensor]):
        """[(k, v)] of [self, top-left, left, top] for block (i, j) whose own K/V is `own`."""
        self.max_blocks = max(self.max_blocks, self.held())
        top = self.row[j] if i > 0 else own
        left = self.left if j > 0 else own
        top_left = self.row[j - 1] if i > 0 and j > 0 else (left if i == 0 else top)
        return [own, top_left, left, top]

    def put(self, j: int, own: Tuple[torch.Tensor, torch.Tensor]) -> None:
        """After block (i, j): the left block (i, j-1) replaces the previous row's j-1 (no later block needs it)."""
        if j > 0:
            self.row[j - 1] = self.left
        self.left = own
        if j == len(self.row) - 1:  # end of the block row
            self.row[j], self.left = own, None


# --------------------------------------------------------------------------- modules
def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: LN(x) (1 + scale) + shift, (shift, scale) [N, D] broadcast over the token dims of x [N, ..., D]."""
    expand = (slice(None),) + (None,) * (x.dim() - 2)
    return x * (1 + scale[expand]) + shift[expand]


class TimeEmbedding(nn.Module):
    """The official TimeEmbedding: [cos, sin](c_noise (1/10^4)^(i/96)), i < 96, then Linear-SiLU-Linear."""

    def __init__(self, dim: int, channels: int = 192):
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.channels // 2
        freqs = (1.0 / 10000) ** (torch.arange(half, dtype=torch.float32, device=c_noise.device) / half)
        x = c_noise.float()[:, None] * freqs
        return self.mlp(torch.cat([x.cos(), x.sin()], dim=1))


class LREncoder(nn.Module):
    """e(LR) of the toy: a small conv encoder, globally average-pooled (stands in for OpenCLIP's image embedding)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU())

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net(lr).mean(dim=(2, 3))


class UniBAttention(nn.Module):
    """Self-attention of one layer: fused qkv, per-head LN of q and k, 2-D RoPE, re-position embeddings on the keys
    of each of the 4 UniBA segments, softmax(q k^T / sqrt(d_h)) v, output projection."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.re_pos = nn.Parameter(torch.zeros(len(SEGMENTS), heads, self.head_dim))
        self.proj = nn.Linear(dim, dim)

    def qkv_of(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """(q, k, v) [..., T, heads, d_h] of tokens x [..., T, D]; q and k normalised, then rotated."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        return apply_rope(self.q_norm(q), cos, sin), apply_rope(self.k_norm(k), cos, sin), v

    def attend(self, q: torch.Tensor, k4: torch.Tensor, v4: torch.Tensor) -> torch.Tensor:
        """q [M, T, heads, d], keys / values of the 4 segments [M, 4T, heads, d] -> [M, T, D]."""
        k4 = add_re_pos(k4, self.re_pos)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k4.transpose(1, 2), v4.transpose(1, 2))
        return self.proj(o.transpose(1, 2).flatten(-2))


class NearbyLRCrossAttention(nn.Module):
    """Layer 0's cross-attention to the LR tokens of the 3 x 3 block neighbourhood (process_lr,
    cross_attention_forward): Conv(C -> D, k 2, s 2) on the LR pixels, learned positions on q and k, qk-LN."""

    def __init__(self, channels: int, dim: int, heads: int, block_tokens: int, lr_block: int):
        super().__init__()
        self.heads, self.head_dim, self.lr_block = heads, dim // heads, lr_block
        self.proj_lr = nn.Conv2d(channels, dim, kernel_size=2, stride=2)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-6)
        self.q_pos = nn.Parameter(torch.randn(block_tokens, heads, self.head_dim) * 0.02)
        self.k_pos = nn.Parameter(torch.randn((3 * lr_block) ** 2, heads, self.head_dim) * 0.02)
        self.proj = nn.Linear(dim, dim)

    def lr_tokens(self, lr: torch.Tensor) -> torch.Tensor:
        """All blocks' neighbourhoods at once: LR [N, C, h, w] -> [N, bh bw, 9 b^2, D] (Unfold, zero padding)."""
        f = self.proj_lr(lr)
        n, d = f.shape[:2]
        b = self.lr_block
        u = F.unfold(f, kernel_size=3 * b, stride=b, padding=b)  # [N, D 9b^2, blocks]
        return u.view(n, d, 9 * b * b, -1).permute(0, 3, 2, 1)

    def lr_tokens_of_block(self, lr: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """One block's neighbourhood, [N, 9 b^2, D]: the conv on the in-range LR pixels, then zero padding, which is
        what Unfold's zero padding of the whole feature map gives ('ar' never touches the rest of the LR image)."""
        b, (h, w) = self.lr_block, (lr.shape[2] // 2, lr.shape[3] // 2)
        r0, r1, c0, c1 = (i - 1) * b, (i + 2) * b, (j - 1) * b, (j + 2) * b
        f = self.proj_lr(lr[:, :, 2 * max(r0, 0):2 * min(r1, h), 2 * max(c0, 0):2 * min(c1, w)])
        f = F.pad(f, (max(-c0, 0), max(c1 - w, 0), max(-r0, 0), max(r1 - h, 0)))
        return f.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor, lr_tok: torch.Tensor) -> torch.Tensor:
        """x [M, T, D] queries of M blocks, lr_tok [M, 9 b^2, D] -> [M, T, D]."""
        q = self.q_norm(self.q(x).unflatten(-1, (self.heads, self.head_dim))) + self.q_pos
        k, v = self.kv(lr_tok).unflatten(-1, (2, self.heads, self.head_dim)).unbind(-3)
        k = self.k_norm(k) + self.k_pos
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(o.transpose(1, 2).flatten(-2))


class InfDiTBlock(nn.Module):
    """Pre-LN block with adaLN and no gates (layer_forward, nogate): h += Attn(mod(LN h)); [layer 0: h += CrossLR(LN h)];
    h += MLP(mod(LN' h)). The attention's keys come from `keys(k, v)`: UniBA over the whole grid or the 'ar' cache."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: Optional[NearbyLRCrossAttention]):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = UniBAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross = cross
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6) if cross is not None else None
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim))

    def forward(self, h: torch.Tensor, c: torch.Tensor, cos, sin, keys, lr_tok=None) -> torch.Tensor:
        """h [N, nb, T, D] tokens of nb blocks; c [N, D]; keys(k, v) -> (k4, v4) [N, nb, 4T, heads, d_h]."""
        shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN(c).chunk(4, dim=1)
        q, k, v = self.attn.qkv_of(_modulate(self.norm1(h), shift_msa, scale_msa), cos, sin)
        k4, v4 = keys(k, v)
        n, nb = q.shape[:2]
        h = h + self.attn.attend(q.flatten(0, 1), k4.flatten(0, 1), v4.flatten(0, 1)).view_as(h)
        if self.cross is not None:
            h = h + self.cross(self.norm2(h).flatten(0, 1), lr_tok.flatten(0, 1)).view_as(h)
            mlp_in = self.norm_cross(h)
        else:
            mlp_in = self.norm2(h)
        return h + self.mlp(_modulate(mlp_in, shift_mlp, scale_mlp))


@dataclass
class SRCondition:
    """What the sampler holds for one batch of LR images: LR [N, C, h, w], up(LR) [N, C, H, W], c_lr [N, D]."""

    lr: torch.Tensor
    up: torch.Tensor
    c_lr: torch.Tensor


class InfDiT(nn.Module):
    """F([c_in x, up(LR)], c_noise | e(LR)) of Inf-DiT at any size that is a multiple of the block (B p pixels)."""

    def __init__(self, channels: int, patch_size: int, dim: int, depth: int, heads: int, block_tokens: int,
                 sr_scale: int, lr_embed_dim: int, mlp_ratio: float = 4.0, cross_lr: bool = True):
        super().__init__()
        if dim % heads or (dim // heads) % 4:
            raise ValueError(f"dim {dim} / heads {heads}: the head dim must be a multiple of 4 (2-D RoPE pairs)")
        block_px = block_tokens * patch_size
        if cross_lr and block_px % (2 * sr_scale):
            raise ValueError(f"a block of {block_px} px must cover an even number of LR pixels for the LR conv")
        self.channels, self.patch_size, self.block, self.sr_scale = channels, patch_size, block_tokens, sr_scale
        self.heads, self.head_dim = heads, dim // heads
        self.patch_embed = nn.Conv2d(2 * channels, dim, kernel_size=patch_size, stride=patch_size)
        self.time_embed = TimeEmbedding(dim)
        self.lr_encoder = LREncoder(channels, lr_embed_dim)
        self.map_vector = nn.Sequential(nn.Linear(lr_embed_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        cross = (NearbyLRCrossAttention(channels, dim, heads, block_tokens ** 2, block_px // sr_scale // 2)
                 if cross_lr else None)
        self.blocks = nn.ModuleList([InfDiTBlock(dim, heads, mlp_ratio, cross if k == 0 else None) for k in range(depth)])
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_out = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear_out = nn.Linear(dim, patch_size * patch_size * channels)
        self.init_weights()

    def init_weights(self) -> None:
        """SAT's N(0, 0.02) linears, Xavier patch embedding / time MLP / output linear (reinit of the mixins), and
        zero adaLN modulations and zero output of map_vector (ConditionEmbedding), as the official code."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for lin in (self.time_embed.mlp[0], self.time_embed.mlp[2], self.linear_out):
            nn.init.xavier_uniform_(lin.weight)
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for lin in [b.adaLN[-1] for b in self.blocks] + [self.adaLN_out[-1], self.map_vector[-1]]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def block_px(self) -> int:
        return self.block * self.patch_size

    # ---- conditioning
    def condition(self, lr: torch.Tensor) -> SRCondition:
        """Everything of the LR image the sampler keeps for all steps: up(LR) and the image embedding."""
        return SRCondition(lr, upsample(lr, self.sr_scale), self.map_vector(self.lr_encoder(lr)))

    def embed_condition(self, c_noise: torch.Tensor, cond: SRCondition) -> torch.Tensor:
        """c = SiLU(t_emb + map_vector(e(LR))) (model_forward applies SiLU before every adaLN's own SiLU)."""
        return F.silu(self.time_embed(c_noise) + cond.c_lr)

    def tokens(self, x_in: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """[c_in x, up(LR)] pixels [N, C, H, W] each -> token grid [N, H/p, W/p, D]."""
        return self.patch_embed(torch.cat([x_in, up], dim=1)).permute(0, 2, 3, 1)

    def output(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Final layer on a token grid [N, h, w, D] -> pixels [N, C, h p, w p]."""
        shift, scale = self.adaLN_out(c).chunk(2, dim=1)
        o = self.linear_out(_modulate(self.norm_out(h), shift, scale))  # [N, h, w, p p C]
        n, th, tw = o.shape[:3]
        p = self.patch_size
        return o.view(n, th, tw, p, p, self.channels).permute(0, 5, 1, 3, 2, 4).reshape(n, self.channels, th * p, tw * p)

    # ---- the two generation modes
    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: SRCondition, mode: str = "full",
                offset: Tuple[int, int] = (0, 0), out: Optional[torch.Tensor] = None, stats: Optional[dict] = None):
        """F of the whole image; x_in = c_in x [N, C, H, W]. mode 'full': one pass over all blocks; 'ar': block by
        block (same result). `offset`: the RoPE position offset; `out`: a buffer for F ('ar' writes into it);
        `stats`: filled with the largest number of blocks one layer's 'ar' cache held."""
        if x_in.shape[2] % self.block_px or x_in.shape[3] % self.block_px:
            raise ValueError(f"image {tuple(x_in.shape[2:])} is not a multiple of the {self.block_px}-px block")
        c = self.embed_condition(c_noise, cond)
        if mode == "full":
            f = self.forward_full(x_in, c, cond, offset)
            return f if out is None else out.copy_(f)
        if mode == "ar":
            return self.forward_ar(x_in, c, cond, offset, out, stats)
        raise ValueError(f"mode {mode!r}: 'full' or 'ar'")

    def forward_full(self, x_in, c, cond: SRCondition, offset) -> torch.Tensor:
        b = self.block
        grid = self.tokens(x_in, cond.up)
        h = to_blocks(grid, b)  # [N, bh, bw, T, D]
        n, bh, bw = h.shape[:3]
        cos, sin = rope_2d(to_blocks(token_positions(*grid.shape[1:3], offset)[None], b)[0].to(x_in.device),
                           self.head_dim)  # [bh, bw, T, d_h]
        cross = self.blocks[0].cross
        lr_tok = cross.lr_tokens(cond.lr) if cross is not None else None  # [N, bh bw, 9 b^2, D]

        def keys(k, v):  # [N, bh bw, T, heads, d_h] -> the 4 segments of every block, [N, bh bw, 4T, heads, d_h]
            grid_of = (n, bh, bw, *k.shape[2:])
            return cat_left_top(k.view(grid_of)).flatten(1, 2), cat_left_top(v.view(grid_of)).flatten(1, 2)

        h, cos, sin = h.flatten(1, 2), cos.flatten(0, 1), sin.flatten(0, 1)
        for blk in self.blocks:
            h = blk(h, c, cos, sin, keys, lr_tok)
        return self.output(from_blocks(h.view(n, bh, bw, *h.shape[2:]), b), c)

    def forward_ar(self, x_in, c, cond: SRCondition, offset, out, stats) -> torch.Tensor:
        bp, b = self.block_px, self.block
        bh, bw = x_in.shape[2] // bp, x_in.shape[3] // bp
        out = torch.empty_like(x_in) if out is None else out
        caches = [RowCache(bw) for _ in self.blocks]
        for i in range(bh):
            for j in range(bw):
                rows, cols = slice(i * bp, (i + 1) * bp), slice(j * bp, (j + 1) * bp)
                h = to_blocks(self.tokens(x_in[:, :, rows, cols], cond.up[:, :, rows, cols]), b).flatten(1, 2)
                cos, sin = rope_2d(token_positions(b, b, offset, i * b, j * b).reshape(1, b * b, 2).to(x_in.device),
                                   self.head_dim)
                cross = self.blocks[0].cross
                lr_tok = cross.lr_tokens_of_block(cond.lr, i, j)[:, None] if cross is not None else None
                for blk, cache in zip(self.blocks, caches):
                    own = []

                    def keys(k, v, cache=cache, own=own, i=i, j=j):
                        own.append((k, v))
                        kv = cache.get(i, j, (k, v))
                        return torch.cat([e[0] for e in kv], dim=2), torch.cat([e[1] for e in kv], dim=2)

                    h = blk(h, c, cos, sin, keys, lr_tok)
                    cache.put(j, own[0])
                out[:, :, rows, cols] = self.output(h.view(h.shape[0], b, b, -1), c)
        if stats is not None:
            stats["cached_blocks"] = max(cache.max_blocks for cache in caches)
        return out


# --------------------------------------------------------------------------- the EDM denoiser of the SR task
def sr_net(model: InfDiT, cond: SRCondition, mode: str = "full", offset: Tuple[int, int] = (0, 0)):
    """F(c_in x, c_noise, _) in common.edm's NetFn form for one batch of LR images (the labels slot is unused)."""
    return lambda x_in, c_noise, _labels: model(x_in, c_noise, cond, mode, offset)


def training_offset(grid: int, generator: torch.Generator) -> Tuple[int, int]:
    """The RoPE offset of a training batch: U{0..7 S} per axis, S = the training token grid (random_position)."""
    r = torch.randint(0, 7 * grid + 1, (2,), generator=generator)
    return int(r[0]), int(r[1])


def sr_loss(model: InfDiT, edm, hr: torch.Tensor, generator: torch.Generator, pre=None) -> torch.Tensor:
    """EDM loss of 4x SR on a batch of HR images [N, C, H, W] in [-1, 1]: LR = downsample(HR); sigma, eps, then the
    RoPE offset from the loop's generator (common.edm.draw_noise order); lambda(sigma) ||D(HR + n) - HR||^2."""
    from common.edm import denoise, draw_noise

    pre = pre or edm.preconditioner()
    sigma, n = draw_noise(edm, hr, generator)
    offset = training_offset(hr.shape[-1] // model.patch_size, generator)
    cond = model.condition(downsample(hr, model.sr_scale))
    d = denoise(sr_net(model, cond, "full", offset), pre, hr + n, sigma, None)
    return (edm.weight(sigma) * (d - hr) ** 2).mean()


@torch.inference_mode()
def super_resolve(model: InfDiT, edm, lr: torch.Tensor, noise: torch.Tensor, num_steps: int, mode: str = "full"):
    """HR [N, C, s h, s w] from LR [N, C, h, w] with common.edm's sampler from x_T = sigma_max * noise."""
    from common.edm import edm_sample

    return edm_sample(sr_net(model, model.condition(lr), mode), edm, noise, None, num_steps)


def independent_patches(model: InfDiT, edm, lr: torch.Tensor, noise: torch.Tensor, num_steps: int, tile: int):
    """The baseline without UniBA's context: every LR tile of `tile` px super-resolved on its own (positions from 0,
    its own e(LR)), with the matching slice of the same noise, and the HR tiles stitched."""
    s = model.sr_scale
    out = torch.empty_like(noise)
    for r in range(0, lr.shape[2], tile):
        for q in range(0, lr.shape[3], tile):
            hr = (slice(None), slice(None), slice(r * s, (r + tile) * s), slice(q * s, (q + tile) * s))
            out[hr] = super_resolve(model, edm, lr[..., r:r + tile, q:q + tile], noise[hr], num_steps)
    return out


def seam_ratio(img: torch.Tensor, tile: int) -> torch.Tensor:
    """Seam score per image: the mean squared pixel difference ACROSS the tile borders (between pixel tile k - 1 and
    tile k, k = tile, 2 tile, ...) divided by the mean squared difference between all other neighbouring pixels,
    horizontal and vertical differences pooled. 1: borders look like the interior; > 1: visible seams."""
    dx = (img[..., :, 1:] - img[..., :, :-1]) ** 2  # [N, C, H, W-1], column k is the step from k to k+1
    dy = (img[..., 1:, :] - img[..., :-1, :]) ** 2
    seam_x = torch.zeros(dx.shape[-1], dtype=torch.bool)
    seam_x[tile - 1::tile] = True
    seam_y = torch.zeros(dy.shape[-2], dtype=torch.bool)
    seam_y[tile - 1::tile] = True
    border = torch.cat([dx[..., seam_x].flatten(1), dy[..., seam_y, :].flatten(1)], dim=1)
    inner = torch.cat([dx[..., ~seam_x].flatten(1), dy[..., ~seam_y, :].flatten(1)], dim=1)
    return border.mean(1) / inner.mean(1).clamp_min(1e-12)


def rope_table(n: int, head_dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(freqs_cos, freqs_sin) [n, n, d_h] at every (row, col) < n: the official buffer's layout (reference check)."""
    return rope_2d(token_positions(n, n), head_dim)

