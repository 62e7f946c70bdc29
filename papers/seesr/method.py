"""SeeSR (Wu et al., CVPR 2024): semantics-aware real-world super-resolution, at toy scale.

Two parts (paper Sec. 3, Fig. 2):

1. DAPE, the degradation-aware prompt extractor (Sec. 3.2, Eq. 1-2). A tagger (RAM in the paper) trained on clean
   HR images is frozen as the teacher; the student is the same tagger with LoRA (r = 8) on the q and v projections
   of its attention, trained on degraded LR inputs to match the teacher's representation embeddings and its soft
   tags on the HR image:  L = MSE(e_LR, e_HR) + BCE(sigma(l_LR), sigma(l_HR))  (weights 1 : 1).
2. The SR model (Sec. 3.3): a pre-trained text-to-image UNet (SD-2-base in the paper; here the repository's small
   pixel-space diffusers UNet2DConditionModel trained on the captioned scenes, root stage train_t2i), frozen, plus
   a ControlNet initialised from it whose input is the upsampled LR image. Text path ("hard prompt") = the text encoder's token states of the tags;
   image path ("soft prompt") = DAPE's embeddings through a new cross-attention after every text cross-attention
   (`image_attentions`). Trainable: the whole ControlNet and the UNet's image attentions; eps-prediction MSE.
   Inference starts from the LR-embedded x_T (LRE, Sec. 3.4, Eq. 5):
       x_T = sqrt(abar_T) * x_LR + sqrt(1 - abar_T) * eps,   T = 999 (last training timestep).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- tags (RAM's label set, here)
NUM_DIGITS, COLOUR_NAMES, COUNTS = 10, ("red", "green", "blue", "yellow", "magenta", "cyan"), (1, 2, 3)
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COUNT_TAGS = ["one digit", "two digits", "three digits"]
TAGS: List[str] = DIGIT_WORDS + list(COLOUR_NAMES) + COUNT_TAGS  # 19 tags: digit present, colour present, count


def tag_vector(digits: Sequence[int], colours: Sequence[str], count: int) -> torch.Tensor:
    """Multi-hot [len(TAGS)] of a scene's known content."""
    y = torch.zeros(len(TAGS))
    for d in digits:
        y[d] = 1.0
    for c in colours:
        y[NUM_DIGITS + COLOUR_NAMES.index(c)] = 1.0
    y[NUM_DIGITS + len(COLOUR_NAMES) + COUNTS.index(count)] = 1.0
    return y


def tag_prompt(tags: torch.Tensor) -> str:
    """The hard prompt: the present tags joined by ', ' (the official "tag1, tag2, ..., {user prompt}")."""
    return ", ".join(t for t, on in zip(TAGS, tags.tolist()) if on > 0.5)


# --------------------------------------------------------------------------- the tagger (RAM's role)
class Attention(nn.Module):
    """Multi-head self-attention with SEPARATE q / k / v projections, so LoRA can target q and v alone (the official
    `lora.MergedLinear(dim, 3 dim, r=8, enable_lora=[True, False, True])` on the fused qkv)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):  # [N, L, D]
        n, L, d = x.shape
        q, k, v = (f(x).view(n, L, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, L, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Tagger(nn.Module):
    """A tiny ViT tagger: image [N, 3, 32, 32] in [-1, 1] -> (embeddings e [N, 1 + P, embed_dim], tag logits l
    [N, num_tags]). `e` plays RAM's `image_proj` output (512-d x 145 tokens in the paper), the soft prompt of the SR
    model; the logits are its tagging head (here linear on the class token; RAM uses a query decoder)."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, heads: int, embed_dim: int, num_tags: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + (image_size // patch) ** 2, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.image_proj = nn.Linear(dim, embed_dim)
        self.head = nn.Linear(dim, num_tags)

    def forward(self, x):
        h = self.patch_embed(x).flatten(2).transpose(1, 2)  # [N, P, dim]
        h = torch.cat([self.cls.expand(len(h), -1, -1), h], 1) + self.pos
        for b in self.blocks:
            h = b(h)
        h = self.norm(h)
        return self.image_proj(h), self.head(h[:, 0])


def add_lora(tagger: Tagger, r: int, alpha: float):
    """DAPE's student: the tagger with LoRA of rank r on q and v of every attention (peft); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(tagger, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=["q", "v"]))


def dape_loss(e_lr, l_lr, e_hr, l_hr, w_feat: float = 1.0, w_logits: float = 1.0):
    """Eq. 1-2 (official basicsr/models/dape_model.py): MSE of the embeddings + the soft-target BCE of the tags,
    -(s_HR log s_LR + (1 - s_HR) log(1 - s_LR)), s = sigmoid(logits), averaged over batch and tags."""
    s_lr, s_hr = torch.sigmoid(l_lr), torch.sigmoid(l_hr)
    bce = -(s_hr * torch.log(s_lr) + (1 - s_hr) * torch.log(1 - s_lr)).mean()
    return w_feat * F.mse_loss(e_lr, e_hr) + w_logits * bce


class DAPE(nn.Module):
    """Teacher (frozen, on HR) + LoRA student (on LR); forward = Eq. 1-2's loss for one batch."""

    def __init__(self, teacher: Tagger, student):
        super().__init__()
        self.teacher, self.student = teacher.requires_grad_(False).eval(), student

    def forward(self, x_hr, x_lr):
        with torch.no_grad():
            e_hr, l_hr = self.teacher(x_hr)
        e_lr, l_lr = self.student(x_lr)
        return dape_loss(e_lr, l_lr, e_hr, l_hr)


# --------------------------------------------------------------------------- image cross-attention (soft prompt)
class TextThenImageAttention(nn.Module):
    """A text cross-attention Transformer2D followed by the new image one (official `image_attentions[i]` after
    `attentions[i]` in models/unet_2d_blocks.py). diffusers has no such block, so module surgery puts this wrapper
    where the text Transformer2D was; the image states come from `image_states(...)` (a context), not an argument."""

    def __init__(self, text: nn.Module, image: nn.Module):
        super().__init__()
        self.text, self.image = text, image
        self.states: Optional[torch.Tensor] = None

    def forward(self, hidden_states, *args, return_dict: bool = False, **kw):  # diffusers' blocks pass False
        h = self.text(hidden_states, *args, return_dict=False, **kw)[0]
        if self.states is not None:
            h = self.image(h, encoder_hidden_states=self.states, return_dict=False)[0]
        return (h,)


def add_image_attentions(net: nn.Module, image_dim: int, heads: int, norm_groups: int) -> nn.ModuleList:
    """Wrap every Transformer2DModel of a UNet / ControlNet with a new image cross-attention (cross dim = DAPE's
    embed_dim). The new blocks' output projections start at zero, so the frozen UNet is unchanged at step 0 (our
    choice; the official initialises them randomly). Returns the new image blocks."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    added = []
    for parent in list(net.modules()):
        if not hasattr(parent, "attentions"):
            continue
        for i, t in enumerate(parent.attentions):
            if not isinstance(t, Transformer2DModel):
                continue
            ch = t.config.in_channels
            image = Transformer2DModel(num_attention_heads=heads, attention_head_dim=ch // heads, in_channels=ch,
                                       cross_attention_dim=image_dim, norm_num_groups=norm_groups)
            nn.init.zeros_(image.proj_out.weight)
            nn.init.zeros_(image.proj_out.bias)
            parent.attentions[i] = TextThenImageAttention(t, image)
            added.append(image)
    return nn.ModuleList(added)


@contextmanager
def image_states(nets: Sequence[nn.Module], states: Optional[torch.Tensor]):
    """Set the soft prompt of every image cross-attention in `nets` for the calls inside (None: off)."""
    blocks = [m for n in nets for m in n.modules() if isinstance(m, TextThenImageAttention)]
    for b in blocks:
        b.states = states
    try:
        yield
    finally:
        for b in blocks:
            b.states = None


class SeeSR(nn.Module):
    """Frozen UNet + trainable ControlNet (from_unet) + trainable image attentions; eps(x_t, t, LR, text, e)."""

    def __init__(self, unet, image_dim: int, heads: int, norm_groups: int, cond_channels: Sequence[int]):
        super().__init__()
        from diffusers import ControlNetModel

        self.unet = unet.requires_grad_(False)
        self.controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(cond_channels))
        self.unet_image_attentions = add_image_attentions(self.unet, image_dim, heads, norm_groups)
        add_image_attentions(self.controlnet, image_dim, heads, norm_groups)

    def trainable(self):
        """The official `params_to_optimize`: all of the ControlNet + the UNet's `image_attentions`."""
        return [*self.controlnet.parameters(), *self.unet_image_attentions.parameters()]

    def forward(self, x_t, t, lr_up, text, image: Optional[torch.Tensor]):
        with image_states([self.unet, self.controlnet], image):
            down, mid = self.controlnet(x_t, t, encoder_hidden_states=text, controlnet_cond=lr_up, return_dict=False)
            return self.unet(x_t, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample


def eps_loss(model, x0, lr_up, text, image, scheduler, gen: torch.Generator):
    """The diffusion loss (official train_seesr.py): t ~ U{0..T-1}, x_t = add_noise(x0, eps, t), MSE(eps_hat, eps)."""
    n = len(x0)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    return F.mse_loss(model(scheduler.add_noise(x0, eps, t), t, lr_up, text, image), eps)


# --------------------------------------------------------------------------- inference
def lre_start(lr_up: torch.Tensor, eps: torch.Tensor, alphas_cumprod: torch.Tensor, T: int = 999) -> torch.Tensor:
    """Eq. 5, LR embedding: x_T = sqrt(abar_T) x_LR + sqrt(1 - abar_T) eps (abar_999 = 0.004660 for SD's betas)."""
    a = alphas_cumprod[T]
    return a.sqrt() * lr_up + (1 - a).sqrt() * eps


@torch.no_grad()
def super_resolve(model: SeeSR, scheduler, lr_up, text, null_text, image, eps, steps: int, guidance: float,
                  start: str = "lre"):
    """DDIM / DPM sampling from x_T with classifier-free guidance as the official pipeline: the unconditional half
    has the null (negative) text but the SAME image embeddings; guidance 1 or text None = one call per step."""
    scheduler.set_timesteps(steps)
    x = lre_start(lr_up, eps, scheduler.alphas_cumprod, int(scheduler.timesteps[0])) if start == "lre" else eps
    x = x * scheduler.init_noise_sigma if start != "lre" else x
    cfg = guidance != 1.0 and text is not None
    for t in scheduler.timesteps:
        tt = t.expand(len(x))
        if cfg:
            both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([lr_up, lr_up]),
                         torch.cat([null_text.expand_as(text), text]),
                         None if image is None else torch.cat([image, image]))
            e_u, e_c = both.chunk(2)
            e = e_u + guidance * (e_c - e_u)
        else:
            e = model(x, tt, lr_up, text if text is not None else null_text.expand(len(x), -1, -1), image)
        x = scheduler.step(e, t, x).prev_sample
    return x


def sd_scheduler(kind: str = "ddpm"):
    """SD-2-base's noise schedule: scaled-linear betas 0.00085 .. 0.012 over T = 1000 (eps prediction). `ddim` uses
    trailing timestep spacing so its first step is t = 999, the LRE start."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    if kind == "ddim":
        return DDIMScheduler(**kw, timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False)
    return DDPMScheduler(**kw, clip_sample=False)
