"""A class-conditional DiT denoiser (Peebles & Xie, ICCV 2023) on diffusers' own `DiTTransformer2DModel`.

MNIST 16x16 with patch 2 is 64 tokens; the CPU profile uses a small width and depth (params.yaml `dit.net`).
What is diffusers' and what is written here:
- diffusers: patch embedding with fixed 2-D sin-cos positions (`PatchEmbed`), the adaLN-Zero blocks
  (`BasicTransformerBlock`, norm_type "ada_norm_zero"), the output layer (LayerNorm modulated by shift/scale,
  linear to p*p*C) and the unpatchify, i.e. `DiTTransformer2DModel.forward`.
- here: (1) DiT's initialisation (`init_dit_weights`): diffusers ships the architecture for loading released
  checkpoints and initialises it like any torch module; the DiT recipe (and MaskDiT's) zero-initialises every
  adaLN modulation and the output layer (adaLN-Zero: each block starts as the identity) and draws the label
  table and the timestep MLP from N(0, 0.02). (2) Condition dropout is taken out of the network: diffusers'
  `LabelEmbedding` drops labels with its own unseeded `torch.rand` in train mode, so a resumed run would not be
  bit-identical; `build_dit` keeps the null row of the table (index `num_classes`) and sets the in-network
  dropout to 0, and the loss drops labels with the training loop's generator (common.edm.drop_labels).
  (3) The pieces of the forward pass (`embed_tokens`, `run_blocks`, `output_layer`, `unpatchify`), which
  MaskDiT needs separately to drop tokens between the patch embedding and the blocks; composed they are
  exactly diffusers' forward (tests/common/test_dit.py).

How the diffusers model differs from the official DiT (facebookresearch/DiT models.py, also MaskDiT's):
- every block has its own timestep MLP and label table (`block.norm1.emb`, a CombinedTimestepLabelEmbeddings);
  the official DiT computes c = t_emb + y_emb once and feeds it to every block's adaLN. The output layer uses
  block 0's embedder. Same function class, more parameters: (depth - 1) extra embedders
  (256 D + D^2 + 2D for the timestep MLP, (K + 1) D for the table).
- the sinusoidal timestep features use diffusers' `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)`:
  frequencies exp(-ln(10^4) i / 127) where DiT divides by 128.
- the MLP's second LayerNorm uses eps 1e-5 (DiT: 1e-6); attention projections are separate q, k, v (DiT: one
  fused qkv, so its Xavier bound differs).
Under EDM (common/edm.py) the "timestep" is c_noise = ln(sigma) / 4, a float, as in MaskDiT's EDMPrecond.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .atomic import atomic_dir


def build_dit(hidden_size: int, depth: int, num_heads: int, patch_size: int, resolution: int, channels: int,
              num_classes: int, meta: bool = False):
    """diffusers' `DiTTransformer2DModel` with DiT's initialisation and no in-network label dropout.

    `num_classes` labels plus a null label (index `num_classes`, the classifier-free guidance condition).
    `meta=True` builds on the meta device (parameter counts of paper-scale networks, nothing allocated)."""
    from diffusers import DiTTransformer2DModel

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
    with torch.device("meta") if meta else nullcontext():
        model = DiTTransformer2DModel(num_attention_heads=num_heads, attention_head_dim=hidden_size // num_heads,
                                      in_channels=channels, num_layers=depth, sample_size=resolution,
                                      patch_size=patch_size, num_embeds_ada_norm=num_classes)
    if not meta:
        init_dit_weights(model)
    return without_label_dropout(model)


def without_label_dropout(model: nn.Module) -> nn.Module:
    """Set every diffusers `LabelEmbedding`'s own dropout to 0 (the table keeps its null row); labels are dropped
    by the loss with the training loop's generator instead (module docstring, point 2)."""
    from diffusers.models.embeddings import LabelEmbedding

    for m in model.modules():
        if isinstance(m, LabelEmbedding):
            if m.embedding_table.num_embeddings != m.num_classes + 1:
                raise ValueError("the label table has no null row: build with a positive class_dropout_prob")
            m.dropout_prob = 0.0
    return model


def init_dit_weights(model: nn.Module) -> None:
    """DiT's `initialize_weights`: Xavier-uniform linears (zero bias), the patch projection like a linear, label
    tables and timestep MLPs N(0, 0.02), then adaLN-Zero: every adaLN modulation and the output layer at zero."""
    from diffusers.models.embeddings import LabelEmbedding, PatchEmbed, TimestepEmbedding
    from diffusers.models.normalization import AdaLayerNormZero

    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, PatchEmbed):
            w = m.proj.weight.data
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(m.proj.bias)
        elif isinstance(m, LabelEmbedding):
            nn.init.normal_(m.embedding_table.weight, std=0.02)
        elif isinstance(m, TimestepEmbedding):
            nn.init.normal_(m.linear_1.weight, std=0.02)
            nn.init.normal_(m.linear_2.weight, std=0.02)
        elif isinstance(m, AdaLayerNormZero):
            zero_(m.linear)
    for name in ("proj_out_1", "proj_out_2"):  # the output layer's modulation and projection
        if getattr(model, name, None) is not None:
            zero_(getattr(model, name))


def zero_(linear: nn.Linear) -> None:
    nn.init.zeros_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


# --------------------------------------------------------------------------- the forward pass in pieces
def embed_tokens(dit, x: torch.Tensor) -> torch.Tensor:
    """Patches + fixed sin-cos positions: [N, C, H, W] -> [N, L, D], L = (H / p)(W / p), row-major."""
    return dit.pos_embed(x)


def run_blocks(dit, h: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The adaLN-Zero blocks on any token subset h [N, L', D] (attention among the tokens given)."""
    for block in dit.transformer_blocks:
        h = block(h, timestep=c_noise, class_labels=labels)
    return h


def output_layer(dit, h: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """DiT's final layer: LayerNorm modulated by (shift, scale) of the condition, then a linear (proj_out_2).
    diffusers conditions it on block 0's embedder. [N, L, D] -> [N, L, proj_out_2.out_features]."""
    cond = dit.transformer_blocks[0].norm1.emb(c_noise, labels, hidden_dtype=h.dtype)
    shift, scale = dit.proj_out_1(F.silu(cond)).chunk(2, dim=1)
    return dit.proj_out_2(dit.norm_out(h) * (1 + scale[:, None]) + shift[:, None])


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, L, p*p*C], patch-major in row order, pixel order (p_row, p_col, c) as DiT's unpatchify."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """[N, L, p*p*C] -> [N, C, H, W] (square token grid), the inverse of `patchify`."""
    n, L, _ = tokens.shape
    g = int(round(L**0.5))
    x = tokens.reshape(n, g, g, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * p, g * p)


def dit_net(dit):
    """F(x, c_noise, labels) of a plain DiT: diffusers' forward (common.edm.NetFn)."""
    return lambda x, c_noise, labels: dit(x, timestep=c_noise, class_labels=labels).sample


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- saving
def save_dit(model, out_dir: Path, meta: dict) -> None:
    """diffusers `save_pretrained` + meta.json (EDM constants, training facts), written atomically."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_dit(model_dir: Path, stage: str = "train_dit"):
    """(DiT in eval mode without label dropout, meta) saved by `save_dit`; missing: names the stage that makes it."""
    from diffusers import DiTTransformer2DModel

    from .config import reading, require

    model_dir = require(model_dir, stage, marker="meta.json")
    with reading(model_dir, stage):
        model = DiTTransformer2DModel.from_pretrained(str(model_dir))
        meta = json.loads((model_dir / "meta.json").read_text())
    return without_label_dropout(model).eval().requires_grad_(False), meta


def flops_per_step(loss_thunk) -> int:
    """FLOPs of one forward + backward, `loss_thunk().backward()`, counted by torch's FlopCounterMode (matmuls,
    convolutions, attention; elementwise ops are not counted). It depends on shapes only, so it is deterministic.
    Run it on meta tensors (models built with meta=True; nothing is computed): there attention decomposes into
    counted matmuls, while torch's fused CPU attention kernel has no FLOP formula and would count 0."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss_thunk().backward()
    return int(counter.get_total_flops())


# --------------------------------------------------------------------------- training (shared by DiT-family stages)
def train_snapshots(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, train_cfg, run_dir: Path,
                    identity: dict, code_files, snapshots=(), desc: str = "DiT"):
    """common.training.train on (x, y) with checkpoints in run_dir/checkpoints, resumable under a fingerprint of
    `identity` and the source of this module, common/edm.py, common/training.py, common/data.py and
    `code_files`; the EMA weights at each step in `snapshots` are kept in run_dir/ema-step-<k> (inside the
    persistent run folder, so a resumed run still has them). Returns (TrainResult, {step: snapshot dir})."""
    import copy

    from . import data, edm, training
    from .training import fingerprint, train

    files = [Path(__file__), Path(edm.__file__), Path(training.__file__), Path(data.__file__), *map(Path, code_files)]
    run_dir = Path(run_dir)
    steps = sorted({int(s) for s in snapshots if 0 < int(s) < train_cfg.steps})
    dirs = {s: run_dir / f"ema-step-{s}" for s in steps}

    def snapshot(step, ema_model):
        write_dir_state(copy.deepcopy(ema_model), dirs[step])

    res = train(model, loss_fn, (x, y), train_cfg, run_dir / "checkpoints", desc=desc, ema_snapshots=steps,
                snapshot_fn=snapshot if steps else None, run_fingerprint=fingerprint(identity, files))
    return res, dirs


def write_dir_state(model: nn.Module, out_dir: Path, meta: Optional[dict] = None) -> None:
    """The model's state dict as out_dir/model.safetensors (+ meta.json), written atomically: for networks that
    are not a diffusers model (MaskDiT) and for EMA snapshots taken during training."""
    from safetensors.torch import save_file

    with atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        if meta is not None:
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def read_dir_state(model: nn.Module, weights_dir: Path, stage: str) -> nn.Module:
    """Load `write_dir_state`'s weights into `model` (built with the same configuration); a missing or unreadable
    folder names the stage that makes it."""
    from safetensors.torch import load_file

    from .config import reading, require

    weights_dir = require(weights_dir, stage, marker="model.safetensors")
    with reading(weights_dir / "model.safetensors", stage):
        model.load_state_dict(load_file(str(weights_dir / "model.safetensors")))
    return model


def read_meta(weights_dir: Path, stage: str) -> dict:
    """meta.json beside the weights of `save_dit` / `write_dir_state`."""
    from .config import read_json

    return read_json(Path(weights_dir) / "meta.json", stage)
