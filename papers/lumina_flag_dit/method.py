"""Flag-DiT -- Gao et al., "Lumina-T2X: Transforming Text into Any Modality, Resolution, and Duration via
Flow-based Large Diffusion Transformers", 2024 (arXiv:2405.05945); official code Alpha-VLLM/Lumina-T2X,
lumina_t2i/models/model.py (the text-conditioned Flag-DiT) at commit 1c606962f9.

Flag-DiT is a LLaMA-style DiT trained with flow matching (common/flow_matching.py: x_t = t x1 + (1 - t) x0,
x1 = DATA, u = x1 - x0). What this file implements, in the paper's / official code's names:

- Block (the Flag-DiT architecture section; TransformerBlock): h = x + g_msa * Attn(mod(RMSNorm x)); out = h + g_mlp * SwiGLU(mod(RMSNorm h)),
  mod(x) = x (1 + scale) + shift, [shift, scale, g] x 2 = adaLN(c) with a ZERO-initialised linear, so every
  block starts as the identity; the final layer's linear and adaLN are zero too, so the output is 0 at init.
  RMSNorm eps 1e-5; SwiGLU hidden = multiple_of * ceil((8/3 dim) / multiple_of) (multiple_of = 256 in the paper).
- Attention (Attention.forward): q = LN_q(W_q x), k = LN_k(W_k x) -- QK-norm is ONE LayerNorm over the
  concatenated heads, applied BEFORE RoPE -- then 1-D RoPE on q, k. Text: k_y = LN_ky(W_ky y'), v_y = W_vy y'
  with y' = RMSNorm(caption); the cross-attention reuses the RoPE'd q, text keys are NOT rotated, pads masked.
  O = W_o [O_self + tanh(g_h) O_cross] with a per-head gate g = 0 at init.
- Positions (DiT_Llama.patchify_and_embed, precompute_freqs_cis): each row of h x w patch tokens is followed by a
  learnable [nextline] token (`eol_token`), and the sequence is flattened, so token (r, c) sits at 1-D position
  p = r (w + 1) + c (c = w is [nextline]). RoPE rotates pairs (2i, 2i+1) of a head as complex numbers by
  angle p * (theta ntk)^(-2i / d_h), theta = 1e4. A batch of different sizes is padded with `pad_token` and
  its keys masked.
- Resolution extrapolation (Lumina-T2I applications; forward_with_cfg): NTK-aware RoPE, ntk = (patch tokens at the target
  size) / (patch tokens at the training size) as in the official demo, and proportional attention, softmax
  scale sqrt(log_{N_train}(N) / d_h) with N the sequence length (the self-attention only; the official
  cross-attention keeps 1/sqrt(d_h)).
- Conditioning: c = t_emb (sinusoid cos|sin, 256 frequencies, of t in [0, 1] as given) + Linear_0(LN(masked
  mean of the caption)), the same c for every block.

The toy's "text encoder": the paper embeds captions with a frozen LLaMA-2-7B (4096-d features, <= 128 tokens);
offline we embed the digit's NAME ("three") character by character with a small learned embedding table
(`CaptionTokenizer`, `FlagDiT.caption_embedding`), trained with the rest. Character tokens give captions of
different lengths (3-5 tokens), so the pad masking is exercised, and the network must read the letters.

Where diffusers' building blocks are used and how the Flag-DiT block differs from diffusers' Lumina-Next
(LuminaNextDiT2DModel, LuminaAttnProcessor2_0):
- RMSNorm: diffusers' `RMSNorm` (fp32 statistics, learnable weight), identical to the official one.
- SwiGLU: diffusers' `LuminaFeedForward` (linear_1/3/2 = the official w1/w3/w2 and the same multiple_of
  rounding); re-initialised xavier-uniform like the official code (diffusers leaves nn.Linear's default).
- RoPE: diffusers' `get_1d_rotary_pos_embed(use_real=False)` and `apply_rotary_emb(use_real=False)` are the
  official complex, interleaved-pair functions. Lumina-Next feeds 2-D RoPE (separate row / column angles, no
  [nextline]); Flag-DiT's RoPE is 1-D over the flattened sequence WITH [nextline]. We do not mix them.
- Attention: Lumina-Next's cross-attention is a second `Attention` with its own query projection; Flag-DiT's
  reuses the self-attention's rotated query and adds only W_ky, W_vy, LN_ky and the gate. Lumina-Next also
  applies tanh to the adaLN gates, a sandwich RMSNorm and no scale-shift before the attention; Flag-DiT uses
  plain gates g_msa, g_mlp (zero-init) with shift and scale. So the block is written out here.
- Timestep embedding: diffusers' `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)` +
  `TimestepEmbedding` equal the official ParallelTimestepEmbedder (re-initialised N(0, 0.02)).
- Absolute-position baseline (`position="absolute"`): the same network with no RoPE and no [nextline], and
  diffusers' 2-D sin-cos table added to the patch embeddings, computed for the sampled grid the way
  diffusers' `PatchEmbed` does at a new size (positions interpolated into the trained range, base_size = the
  training grid).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.models.attention import LuminaFeedForward
from diffusers.models.embeddings import (
    TimestepEmbedding,
    Timesteps,
    apply_rotary_emb,
    get_1d_rotary_pos_embed,
    get_2d_sincos_pos_embed,
)
from diffusers.models.normalization import RMSNorm

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POSITIONS = ("rope1d", "absolute")


# --------------------------------------------------------------------------- captions
class CaptionTokenizer:
    """Digit names as character tokens: id 0 = pad, 1 = the null caption (dropped for classifier-free
    guidance, like the official T2I's empty caption), then one id per letter used by the names."""

    PAD, NULL = 0, 1

    def __init__(self, names: Sequence[str] = DIGIT_NAMES):
        self.names = tuple(names)
        self.letters = sorted({ch for n in self.names for ch in n})
        self.max_len = max(map(len, self.names))
        ids = torch.full((len(self.names), self.max_len), self.PAD, dtype=torch.long)
        for i, name in enumerate(self.names):
            ids[i, : len(name)] = torch.tensor([2 + self.letters.index(ch) for ch in name])
        self.table, self.vocab_size = ids, 2 + len(self.letters)

    def __call__(self, labels: torch.Tensor, drop: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, L] long, mask [B, L] bool) of labels [B]; `drop` [B] bool: the null caption instead."""
        ids = self.table.to(labels.device)[labels]
        if drop is not None:  # drawn on the CPU from the step's generator; the labels may sit on a GPU
            null = torch.full_like(ids, self.PAD)
            null[:, 0] = self.NULL
            ids = torch.where(drop.to(ids.device)[:, None], null, ids)
        return ids, ids != self.PAD


# --------------------------------------------------------------------------- positions
def precompute_freqs_cis(head_dim: int, end: int, theta: float = 10000.0, ntk_factor: float = 1.0,
                         rope_scaling_factor: float = 1.0) -> torch.Tensor:
    """[end, head_dim / 2] complex64: exp(i p (theta ntk)^(-2i/d)) / (position interpolation factor) for p < end
    (official precompute_freqs_cis; diffusers' get_1d_rotary_pos_embed is the same function)."""
    return get_1d_rotary_pos_embed(head_dim, end, theta=theta, use_real=False, linear_factor=rope_scaling_factor,
                                   ntk_factor=ntk_factor)


def nextline_positions(h: int, w: int) -> torch.Tensor:
    """[h, w + 1] 1-D RoPE positions of an h x w patch grid with [nextline]: p = r (w + 1) + c (c = w: [nextline])."""
    return torch.arange(h)[:, None] * (w + 1) + torch.arange(w + 1)[None, :]


def ntk_factor_for(h: int, w: int, h_train: int, w_train: int) -> float:
    """NTK scale of RoPE's base: patch tokens at the target size / at the training size (the official demo's
    ((W // 16) (H // 16)) / (image_size // 16)^2, [nextline] tokens not counted); 1 at or below the training size."""
    return max(1.0, (h * w) / (h_train * w_train))


def proportional_scale(seq_len: int, base_seqlen: Optional[int], head_dim: int) -> float:
    """Softmax scale: sqrt(log_{N_train}(N) / d_h) (proportional attention) or 1/sqrt(d_h) (base_seqlen None).
    At N = N_train both are 1/sqrt(d_h); at N > N_train the logits are sharpened to keep the entropy."""
    if base_seqlen is None:
        return math.sqrt(1.0 / head_dim)
    return math.sqrt(math.log(seq_len, base_seqlen) / head_dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (1 + scale) + shift, per sample (shift, scale: [B, D]; x: [B, N, D])."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _linear(fan_in: int, fan_out: int, bias: bool = False, init: str = "xavier") -> nn.Linear:
    """nn.Linear initialised like the official code: xavier-uniform, N(0, 0.02) or zeros (bias zero)."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    {"xavier": nn.init.xavier_uniform_, "normal": lambda w: nn.init.normal_(w, std=0.02),
     "zeros": nn.init.zeros_}[init](layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


# --------------------------------------------------------------------------- attention
class FlagAttention(nn.Module):
    """Self-attention with QK-norm and 1-D RoPE, plus the zero-gated cross-attention on the caption."""

    def __init__(self, dim: int, n_heads: int, qk_norm: bool, cap_dim: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, dim // n_heads
        self.wq, self.wk, self.wv, self.wo = (_linear(dim, dim) for _ in range(4))
        self.wk_y, self.wv_y = _linear(cap_dim, dim), _linear(cap_dim, dim)
        self.gate = nn.Parameter(torch.zeros(n_heads))  # g_h = 0: tanh(g) = 0, the text path starts closed
        norm = (lambda: nn.LayerNorm(dim)) if qk_norm else nn.Identity  # over the concatenated heads
        self.q_norm, self.k_norm, self.ky_norm = norm(), norm(), norm()

    def forward(self, x: torch.Tensor, freqs_cis: Optional[torch.Tensor], y: torch.Tensor, y_mask: torch.Tensor,
                x_mask: Optional[torch.Tensor] = None, base_seqlen: Optional[int] = None) -> torch.Tensor:
        """x [B, N, D], freqs_cis [N, d_h/2] complex (None: no RoPE), y [B, L, cap_dim] (RMS-normed), y_mask [B, L]
        bool, x_mask [B, N] bool (None: all valid). Returns [B, N, D]."""
        B, N, _ = x.shape
        heads = (B, -1, self.n_heads, self.head_dim)
        q, k = self.q_norm(self.wq(x)).view(heads), self.k_norm(self.wk(x)).view(heads)  # QK-norm before RoPE
        v = self.wv(x).view(heads)
        if freqs_cis is not None:  # diffusers' Lumina layout: a batch axis in front, [1, N, d_h/2]
            q, k = (apply_rotary_emb(z, freqs_cis[None], use_real=False) for z in (q, k))
        keys = None if x_mask is None else x_mask.view(B, 1, 1, N)
        o = _sdpa(q, k, v, keys, proportional_scale(N, base_seqlen, self.head_dim))  # [B, N, H, d_h]
        k_y = self.ky_norm(self.wk_y(y)).view(heads)  # text keys: LN, no rotation
        o_y = _sdpa(q, k_y, self.wv_y(y).view(heads), y_mask.view(B, 1, 1, -1), None)  # the RoPE'd q again
        o = o + torch.tanh(self.gate).view(1, 1, -1, 1) * o_y
        return self.wo(o.flatten(-2))


    def self_logits(self, x: torch.Tensor, freqs_cis: Optional[torch.Tensor]) -> torch.Tensor:
        """[B, H, N, N] self-attention logits s q.k / sqrt(d_h) (the quantity QK-norm keeps bounded)."""
        B = x.shape[0]
        heads = (B, -1, self.n_heads, self.head_dim)
        q, k = self.q_norm(self.wq(x)).view(heads), self.k_norm(self.wk(x)).view(heads)
        if freqs_cis is not None:
            q, k = (apply_rotary_emb(z, freqs_cis[None], use_real=False) for z in (q, k))
        return torch.einsum("bnhd,bmhd->bhnm", q, k) / math.sqrt(self.head_dim)


def _sdpa(q, k, v, mask, scale):
    """Scaled dot-product attention on [B, N, H, d] tensors (torch's SDPA wants [B, H, N, d])."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=scale)
    return out.transpose(1, 2)


# --------------------------------------------------------------------------- blocks
class FlagDiTBlock(nn.Module):
    """h = x + g_msa Attn(mod(RMSNorm x)); out = h + g_mlp SwiGLU(mod(RMSNorm h)); adaLN zero-init."""

    def __init__(self, dim: int, n_heads: int, multiple_of: int, qk_norm: bool, cap_dim: int, norm_eps: float = 1e-5):
        super().__init__()
        self.attention = FlagAttention(dim, n_heads, qk_norm, cap_dim)
        self.feed_forward = LuminaFeedForward(dim, int(2 * (4 * dim) / 3), multiple_of=multiple_of)
        for lin in (self.feed_forward.linear_1, self.feed_forward.linear_2, self.feed_forward.linear_3):
            nn.init.xavier_uniform_(lin.weight)
        self.attention_norm, self.ffn_norm = RMSNorm(dim, eps=norm_eps), RMSNorm(dim, eps=norm_eps)
        self.attention_y_norm = RMSNorm(cap_dim, eps=norm_eps)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), _linear(min(dim, 1024), 6 * dim, bias=True, init="zeros"))

    def forward(self, x, c, freqs_cis, y, y_mask, x_mask=None, base_seqlen=None):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        attn = self.attention(modulate(self.attention_norm(x), shift_msa, scale_msa), freqs_cis,
                              self.attention_y_norm(y), y_mask, x_mask, base_seqlen)
        h = x + gate_msa.unsqueeze(1) * attn
        return h + gate_mlp.unsqueeze(1) * self.feed_forward(modulate(self.ffn_norm(h), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """LayerNorm (no affine, eps 1e-6), adaLN shift/scale, linear to patch pixels; linear and adaLN zero-init."""

    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = _linear(dim, patch_size * patch_size * out_channels, bias=True, init="zeros")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), _linear(min(dim, 1024), 2 * dim, bias=True, init="zeros"))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


# --------------------------------------------------------------------------- the network
class FlagDiT(nn.Module):
    """Flag-DiT v(x_t, t, caption) on images [B, C, H, W]; H, W multiples of the patch size, any size."""

    def __init__(self, in_channels: int, patch_size: int, dim: int, depth: int, n_heads: int, cap_dim: int,
                 vocab_size: int, multiple_of: int = 256, qk_norm: bool = True, position: str = "rope1d",
                 train_grid: int = 8, norm_eps: float = 1e-5, rope_theta: float = 10000.0):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
        self.in_channels, self.patch_size, self.dim, self.n_heads = in_channels, patch_size, dim, n_heads
        self.position, self.train_grid, self.rope_theta = position, train_grid, rope_theta
        self.x_embedder = _linear(patch_size * patch_size * in_channels, dim, bias=True)
        self.t_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)  # cos | sin of t as given
        self.t_embedder = TimestepEmbedding(256, min(dim, 1024))
        for lin in (self.t_embedder.linear_1, self.t_embedder.linear_2):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        self.caption_embedding = nn.Embedding(vocab_size, cap_dim)  # the toy's text encoder (module docstring)
        self.cap_embedder = nn.Sequential(nn.LayerNorm(cap_dim), _linear(cap_dim, min(dim, 1024), True, "zeros"))
        self.layers = nn.ModuleList(FlagDiTBlock(dim, n_heads, multiple_of, qk_norm, cap_dim, norm_eps)
                                    for _ in range(depth))
        self.final_layer = FinalLayer(dim, patch_size, in_channels)
        self.eol_token = nn.Parameter(torch.randn(dim) * 0.02)  # [nextline]
        self.pad_token = nn.Parameter(torch.randn(dim) * 0.02)

    # ----------------------------------------------------------------- tokens
    def patchify_and_embed(self, x: Union[torch.Tensor, List[torch.Tensor]]):
        """(tokens [B, N, D], key mask [B, N] bool, [(h, w) patch grid per image]).

        rope1d: each row of w patch tokens + [nextline], flattened (N = h (w + 1)); a list of images of
        different sizes is padded with `pad_token` to the longest and masked. absolute: h w patch tokens + the
        2-D sin-cos table of the grid (tensor input only)."""
        if isinstance(x, torch.Tensor):  # one size: the batched path
            return self._embed_batch(x)
        p, out, grids = self.patch_size, [], []
        for img in x:  # [C, H, W] -> [h, w, C p p] (features in (C, pH, pW) order, as the official code)
            C, H, W = img.shape
            h, w = H // p, W // p
            tok = self.x_embedder(img.reshape(C, h, p, w, p).permute(1, 3, 0, 2, 4).flatten(2))
            if self.position == "rope1d":
                tok = torch.cat([tok, self.eol_token.view(1, 1, -1).expand(h, 1, -1)], dim=1)
            else:
                tok = tok + self._abs_pos(h, w).to(tok)
            out.append(tok.flatten(0, 1))
            grids.append((h, w))
        n = max(len(t) for t in out)
        mask = torch.stack([torch.arange(n, device=out[0].device) < len(t) for t in out])
        tokens = torch.stack([torch.cat([t, self.pad_token.view(1, -1).expand(n - len(t), -1)]) for t in out])
        return tokens, mask, grids

    def _embed_batch(self, x: torch.Tensor):
        """patchify_and_embed of a batch of one size: no padding, every key valid."""
        B, C, H, W = x.shape
        p = self.patch_size
        h, w = H // p, W // p
        tok = self.x_embedder(x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).flatten(3))  # [B, h, w, D]
        if self.position == "rope1d":
            tok = torch.cat([tok, self.eol_token.view(1, 1, 1, -1).expand(B, h, 1, -1)], dim=2)
        else:
            tok = tok + self._abs_pos(h, w).to(tok)
        tok = tok.flatten(1, 2)
        return tok, torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device), [(h, w)] * B

    def _abs_pos(self, h: int, w: int) -> torch.Tensor:
        """[h, w, D] diffusers 2-D sin-cos table for an h x w grid, interpolated into the trained range."""
        table = get_2d_sincos_pos_embed(self.dim, (h, w), base_size=self.train_grid, interpolation_scale=1.0,
                                        output_type="pt")
        return table.float().view(h, w, self.dim)

    def unpatchify(self, out: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[B, N, p p C] -> [B, C, h p, w p], dropping the [nextline] tokens (output features in (pH, pW, C) order)."""
        B, p, C = out.shape[0], self.patch_size, self.in_channels
        wt = w + 1 if self.position == "rope1d" else w
        x = out[:, : h * wt].reshape(B, h, wt, p, p, C)[:, :, :w]
        return x.permute(0, 5, 1, 3, 2, 4).reshape(B, C, h * p, w * p)

    def rope(self, seq_len: int, ntk_factor: float = 1.0) -> Optional[torch.Tensor]:
        """RoPE table for positions 0..seq_len-1 (the official one sliced), None for the absolute baseline."""
        if self.position != "rope1d":
            return None
        return precompute_freqs_cis(self.dim // self.n_heads, seq_len, self.rope_theta, ntk_factor)

    # ----------------------------------------------------------------- forward
    def condition(self, t: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        """c = t_emb + Linear_0(LN(masked mean of the caption embeddings)): [B, min(D, 1024)]."""
        m = y_mask.unsqueeze(-1).to(y)
        pooled = (y * m).sum(1) / m.sum(1)
        return self.t_embedder(self.t_proj(t).to(y)) + self.cap_embedder(pooled)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cap_ids: torch.Tensor, cap_mask: torch.Tensor,
                ntk_factor: float = 1.0, base_seqlen: Optional[int] = None) -> torch.Tensor:
        """Velocity v(x_t, t | caption): x [B, C, H, W], t [B] in [0, 1] (1 = data), cap_ids / cap_mask [B, L].
        `ntk_factor`, `base_seqlen`: NTK-scaled RoPE and proportional attention for extrapolation."""
        tokens, _, grids = self.patchify_and_embed(x)
        y = self.caption_embedding(cap_ids)
        c = self.condition(t, y, cap_mask)
        freqs = self.rope(tokens.shape[1], ntk_factor)
        freqs = None if freqs is None else freqs.to(tokens.device)
        for layer in self.layers:
            tokens = layer(tokens, c, freqs, y, cap_mask, None, base_seqlen)
        return self.unpatchify(self.final_layer(tokens, c), *grids[0])

    def seq_len(self, H: int, W: int) -> int:
        """Tokens of an H x W image (with [nextline] for rope1d): the N of proportional attention."""
        h, w = H // self.patch_size, W // self.patch_size
        return h * (w + 1) if self.position == "rope1d" else h * w

    def gates(self) -> torch.Tensor:
        """[depth, heads] tanh(g): how open each block's text cross-attention is (0 at init)."""
        return torch.stack([torch.tanh(b.attention.gate.detach()) for b in self.layers])


def caption_dropout(labels: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """[B] bool: which captions are replaced by the null caption (classifier-free guidance training)."""
    return torch.rand(labels.shape[0], generator=generator) < p


def flag_dit_velocity(model: FlagDiT, tokenizer: CaptionTokenizer, labels: torch.Tensor,
                      drop: Optional[torch.Tensor] = None, ntk_factor: float = 1.0,
                      base_seqlen: Optional[int] = None):
    """v(x, t) of `model` for captions of `labels` (a closure for common.flow_matching)."""
    ids, mask = tokenizer(labels, drop)

    def velocity(x, t):
        return model(x, t, ids.to(x.device), mask.to(x.device), ntk_factor, base_seqlen)

    return velocity


def guided_velocity(model: FlagDiT, tokenizer: CaptionTokenizer, labels: torch.Tensor, scale: float,
                    ntk_factor: float = 1.0, base_seqlen: Optional[int] = None):
    """Classifier-free guidance v_null + s (v_cap - v_null), one batched call (forward_with_cfg; the official
    code guides only channels [:3] of its 4-channel latents -- our images have 1 channel, all guided)."""
    both = torch.cat([labels, labels])
    drop = torch.cat([torch.zeros_like(labels, dtype=torch.bool), torch.ones_like(labels, dtype=torch.bool)])
    v = flag_dit_velocity(model, tokenizer, both, drop, ntk_factor, base_seqlen)

    def velocity(x, t):
        v_cap, v_null = v(torch.cat([x, x]), torch.cat([t, t])).chunk(2)
        return v_null + scale * (v_cap - v_null)

    return velocity


@torch.no_grad()
def max_attention_logit(model: FlagDiT, x: torch.Tensor, t: torch.Tensor, cap_ids: torch.Tensor,
                        cap_mask: torch.Tensor) -> float:
    """Largest |self-attention logit| over blocks, heads and token pairs for one batch: without QK-norm the
    logits can grow with the weights (the instability QK-norm removes); with it |q|, |k| are LayerNorm-bounded."""
    found = []

    def hook(attn, args):
        found.append(attn.self_logits(args[0], args[1]).abs().max())

    handles = [b.attention.register_forward_pre_hook(hook) for b in model.layers]
    try:
        model(x, t, cap_ids, cap_mask)
    finally:
        for h in handles:
            h.remove()
    return float(torch.stack(found).max())
