"""A text-conditional pixel diffusion model on the captioned scenes, conditioned on the shared scene CLIP's
text tower through cross-attention (the Stable Diffusion layout at 32x32 RGB, without a VAE).

Text path (`PromptEncoder`), split in two so a prompt optimiser can feed mixtures of input embeddings
(DPO-Diff's Gumbel-softmax over a slot's word choices) and get gradients:
  embed_words(prompts) -> inputs_embeds [B, L, W]   token-embedding rows (no positions), L = context_length
  encode(inputs_embeds) -> hidden [B, L, W]         + positional embedding, open_clip's causal transformer,
                                                     ln_final: the per-token states the UNet cross-attends to
  text_features(hidden, eos) -> [B, E]              the EOT token's state, projected: the CLIP text feature
The CLIP tower is the scene CLIP of root stage train_scene_clip, FROZEN. Its word-level tokenizer knows only
the grammar words; each synonym of common/prompt_words.yaml gets a NEW input-embedding row (`synonyms`),
initialised at its grammar word's row and trained with the diffusion model: textual inversion with the
text tower frozen. Ids >= len(tokenizer) index those rows.

Training (root stage train_t2i): eps-prediction DDPM loss (common.diffusion.denoising_loss) on clean
captions, each grammar word replaced by one of its synonyms with probability `synonym_rate` (uniform over
the synonyms), the whole caption replaced by the empty prompt with probability `cond_dropout` (classifier-
free guidance). Sampling: the shared sampler (common.sampling.sample: per-sample seeded noise, DDIM /
DPM-Solver steps) with text CFG, a negative prompt taking the empty prompt's place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from common.prompts import WordTable, load_table, split_words, substitution_groups


# --------------------------------------------------------------------------- text path
class PromptEncoder(nn.Module):
    """The scene CLIP's text tower (frozen) plus trainable embedding rows for the synonym words."""

    def __init__(self, clip_model, tok, table: Optional[WordTable] = None):
        super().__init__()
        self.table = table or load_table()
        self.vocab = dict(tok.get_vocab())
        self.bos, self.eos, self.pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        self.context_length = clip_model.context_length
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", clip_model.attn_mask.clone(), persistent=False)
        self.requires_grad_(False)  # the CLIP tower stays frozen; only `synonyms` (below) trains
        rows = [self.vocab[self.table.canonical[s][1]] for s in self.table.synonym_words]
        self.synonyms = nn.Embedding(len(rows), self.width)
        with torch.no_grad():
            self.synonyms.weight.copy_(self.token_embedding.weight[torch.tensor(rows, dtype=torch.long)])

    @property
    def width(self) -> int:
        return self.token_embedding.weight.shape[1]

    @property
    def base_vocab_size(self) -> int:
        return self.token_embedding.weight.shape[0]

    def word_id(self, word: str) -> int:
        """A grammar word's tokenizer id, or base_vocab_size + k for the k-th synonym word."""
        if word in self.vocab:
            return self.vocab[word]
        if word in self.table.canonical:
            return self.base_vocab_size + self.table.synonym_words.index(word)
        raise KeyError(f"'{word}' is neither a scene-grammar word nor a synonym in common/prompt_words.yaml")

    def ids(self, prompts: Sequence[str]) -> torch.Tensor:
        """[B, L] ids: bos, words, eos, padding (as common.clip.tokenize; "" is the empty / null prompt)."""
        out = torch.full((len(prompts), self.context_length), self.pad, dtype=torch.long)
        for i, p in enumerate(prompts):
            row = [self.bos] + [self.word_id(w) for w in split_words(p)][: self.context_length - 2] + [self.eos]
            out[i, : len(row)] = torch.tensor(row)
        return out

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, L] ids -> inputs_embeds [B, L, W] (grammar rows of the frozen table, synonym rows trained)."""
        syn = ids >= self.base_vocab_size
        e = self.token_embedding(ids.clamp(max=self.base_vocab_size - 1))
        if syn.any():
            e = torch.where(syn[..., None], self.synonyms((ids - self.base_vocab_size).clamp(min=0)), e)
        return e

    def embed_words(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.embed_ids(self.ids(prompts).to(self.token_embedding.weight.device))

    def word_embeddings(self, words: Sequence[str]) -> torch.Tensor:
        """[K, W] input-embedding rows of single words (a slot's choices for a mixture)."""
        ids = torch.tensor([self.word_id(w) for w in words], device=self.token_embedding.weight.device)
        return self.embed_ids(ids[None])[0]

    def encode(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """inputs_embeds [B, L, W] -> per-token hidden states [B, L, W] (open_clip's CLIP.encode_text up to
        ln_final, with the causal mask: a token sees only the tokens before it)."""
        x = inputs_embeds + self.positional_embedding.to(inputs_embeds.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        return self.ln_final(x)

    def eos_index(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids == self.eos).int().argmax(dim=-1)

    def text_features(self, hidden: torch.Tensor, eos_index: torch.Tensor) -> torch.Tensor:
        """The pooled CLIP text feature [B, E]: the EOT token's hidden state, projected (unnormalised)."""
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_index.to(hidden.device)]
        proj = self.text_projection
        return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj

    def hidden(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode(self.embed_words(prompts))


# --------------------------------------------------------------------------- the model
def build_unet(cfg, cross_attention_dim: int, resolution: int = 32, channels: int = 3):
    """diffusers UNet2DConditionModel: one level per block_out_channels entry, cross-attention where
    `cross_attention` says so (the Stable Diffusion block layout, small)."""
    from diffusers import UNet2DConditionModel

    down = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.cross_attention]
    up = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.cross_attention)]
    return UNet2DConditionModel(
        sample_size=resolution, in_channels=channels, out_channels=channels, layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels), down_block_types=tuple(down), up_block_types=tuple(up),
        cross_attention_dim=cross_attention_dim, attention_head_dim=cfg.attention_heads,
        norm_num_groups=cfg.norm_num_groups)


class TextToImage(nn.Module):
    """The UNet and the prompt encoder (frozen CLIP tower + trainable synonym rows) as one trainable module."""

    def __init__(self, unet, text: PromptEncoder):
        super().__init__()
        self.unet, self.text = unet, text

    def eps(self, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t, text hidden states [B, L, W])."""
        return self.unet(x, t, encoder_hidden_states=hidden).sample


def build_t2i(cfg, clip_model, tok, seed: int) -> TextToImage:
    torch.manual_seed(seed)
    text = PromptEncoder(clip_model, tok)
    return TextToImage(build_unet(cfg.unet, text.width), text)


def synonym_table(model: TextToImage) -> tuple:
    """(choices [G + 1, S] extended ids, counts [G + 1]) of the substitution groups; row 0 = no group."""
    groups = model.text.table.groups()
    width = max(len(model.text.table.synonyms(r, w)) for r, w in groups)
    choices = torch.zeros(len(groups) + 1, width, dtype=torch.long)
    counts = torch.ones(len(groups) + 1, dtype=torch.long)
    for g, (role, word) in enumerate(groups, start=1):
        syn = [model.text.word_id(s) for s in model.text.table.synonyms(role, word)]
        choices[g, : len(syn)], counts[g] = torch.tensor(syn), len(syn)
    return choices, counts


def caption_groups(model: TextToImage, captions: Sequence[str]) -> torch.Tensor:
    """[N, L] substitution group per token position of each caption (0: bos, punctuation, eos, padding)."""
    out = torch.zeros(len(captions), model.text.context_length, dtype=torch.long)
    for i, c in enumerate(captions):
        g = substitution_groups(c, model.text.table)[: model.text.context_length - 2]
        out[i, 1 : 1 + len(g)] = torch.tensor(g, dtype=torch.long)
    return out


def substitute(ids: torch.Tensor, groups: torch.Tensor, table: tuple, rate: float,
               generator: torch.Generator) -> torch.Tensor:
    """Each word with a synonym group is replaced, with probability `rate`, by one of its synonyms (uniform):
    a grammar word keeps probability 1 - rate, each of its S synonyms gets rate / S."""
    choices, counts = (t.to(ids.device) for t in table)
    u = torch.rand(ids.shape, generator=generator).to(ids.device)
    pick = torch.rand(ids.shape, generator=generator).to(ids.device)
    k = (pick * counts[groups]).long().clamp(max=choices.shape[1] - 1)
    swap = (groups > 0) & (u < rate)
    return torch.where(swap, choices[groups, k], ids)


def t2i_loss(model: TextToImage, schedule, images_u8: torch.Tensor, ids: torch.Tensor, groups: torch.Tensor,
             generator: torch.Generator, *, table: tuple, synonym_rate: float, cond_dropout: float) -> torch.Tensor:
    """DDPM eq. (14) on one batch: synonym substitution, caption dropout (the empty prompt), then the shared
    eps-prediction loss with the text hidden states as the condition. Draw order: substitution, dropout, then
    common.diffusion.denoising_loss's own draws."""
    from common.clip import to_input
    from common.diffusion import denoising_loss

    ids = substitute(ids, groups, table, synonym_rate, generator)
    drop = (torch.rand(ids.shape[0], generator=generator) < cond_dropout).to(ids.device)
    null = model.text.ids([""]).to(ids.device)
    ids = torch.where(drop[:, None], null, ids)
    hidden = model.text.encode(model.text.embed_ids(ids))
    return denoising_loss(model.eps, schedule, to_input(images_u8), hidden, generator)


# --------------------------------------------------------------------------- sampling
def text_cfg(model: TextToImage, scale: float, negative: torch.Tensor):
    """model_fn(x, t, hidden) with classifier-free guidance: eps = eps(neg) + w (eps(cond) - eps(neg)), the
    negative prompt's hidden states [B, L, W] in the null prompt's place (w = 1: the conditional model)."""
    def fn(x, t, c):
        if scale == 1.0:
            return model.eps(x, t, c)
        e_c, e_n = model.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, negative])).chunk(2)
        return e_n + scale * (e_c - e_n)

    return fn


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def generate_images(model: TextToImage, schedule, prompts: Sequence[str], spec,
                    negative_prompts: Optional[Sequence[str]] = None, batch_size: int = 64,
                    resolution: int = 32, hooks_factory=None) -> torch.Tensor:
    """uint8 [N, 3, R, R] samples of `prompts` through the shared sampler (common.sampling.sample): sample j's
    noise depends only on seed (spec.seed, j), so results do not depend on batch_size. CFG at
    spec.guidance_scale with `negative_prompts` (default: the empty prompt)."""
    from common.sampling import SampleNoise, sample, sample_seeds

    model.eval()
    negative_prompts = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
    seeds = sample_seeds(spec.seed, len(prompts))
    steps = spec.steps(schedule.T)
    out = []
    for s in range(0, len(prompts), batch_size):
        p, n = list(prompts[s : s + batch_size]), negative_prompts[s : s + batch_size]
        hooks = hooks_factory() if hooks_factory else None
        fn = text_cfg(model, spec.guidance_scale, model.text.hidden(n))
        x = sample(fn, schedule, SampleNoise(seeds[s : s + len(p)], (3, resolution, resolution)),
                   model.text.hidden(p), steps, spec.method, spec.eta, spec.clip_x0, hooks)
        out.append(to_uint8(x))
    return torch.cat(out)


# --------------------------------------------------------------------------- saving
def save_t2i(model: TextToImage, out_dir: Path, schedule_config: dict, meta: dict):
    """The whole module (UNet, frozen CLIP text tower, synonym rows) + what it takes to rebuild it."""
    from common.atomic import atomic_dir

    with atomic_dir(Path(out_dir)) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "meta.json").write_text(json.dumps({**meta, "schedule": schedule_config,
                                                   "synonym_words": model.text.table.synonym_words}, indent=2))


def load_t2i(path: Path, cfg, stage: str = "train_t2i"):
    """(TextToImage, NoiseSchedule) written by `save_t2i`; `cfg` is the RootConfig (scene CLIP spec, t2i.unet)."""
    from common.clip import build_clip, build_tokenizer
    from common.config import reading, require
    from common.diffusion import NoiseSchedule

    path = require(path, stage, marker="model.pt")
    with reading(path / "meta.json", stage):
        meta = json.loads((path / "meta.json").read_text())
    tok = build_tokenizer()
    model = build_t2i(cfg.t2i, build_clip(cfg.scene_clip.model, tok, seed=0), tok, seed=0)
    if meta["synonym_words"] != model.text.table.synonym_words:
        raise ValueError(f"{path}: trained with another synonym table; rerun dvc repro dvc.yaml:{stage}")
    with reading(path / "model.pt", stage):
        model.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
    return model.eval(), NoiseSchedule(**meta["schedule"])


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
