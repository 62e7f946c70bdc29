"""DPO-Diff (Wang, Liu, Hsieh, Gong, ICML 2024): discrete prompt optimisation for diffusion models.

A prompt is a choice per word slot from a search space (synonyms for the positive prompt, antonyms for the
negative prompt). Section 4: the choice is relaxed with Gumbel-softmax over per-slot logits; the mixture of
the choices' input embeddings goes through the frozen text tower. Section 4.2: the "shortcut" gradient runs
t sampler steps without grad, then ONE denoiser call with grad, estimates x0 and backpropagates the loss
(the spherical CLIP distance of x0-hat to the USER prompt) to the logits. GPO = RMSprop on the logits then
sampling of discrete prompts; EPO = evolutionary search over discrete prompts; hybrid = GPO seeds EPO.
"""

import math
from dataclasses import dataclass
from typing import Callable, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

EMPTY = ""  # the negative prompt's "no word" choice (index 0 of a negative slot, as the official)


# --------------------------------------------------------------------------- search space (Sec. 3)
@dataclass
class SearchSpace:
    """Per word of the user prompt: None (fixed word) or its choices. kind "positive": choices[0] = the word
    itself, then synonyms; kind "negative": choices[0] = EMPTY, then antonyms (the words of the negative prompt)."""

    user: str
    kind: str
    words: List[str]
    choices: List[List[str]]  # one list per slot (only words with alternatives are slots)
    slot_of_word: List[int]  # word index -> slot index or -1

    def text(self, idx: Sequence[int]) -> str:
        """A discrete point -> its prompt text (the positive prompt, or the negative prompt's words)."""
        if self.kind == "positive":
            return " ".join(self.choices[s][idx[s]] if s >= 0 else w for w, s in zip(self.words, self.slot_of_word))
        return " ".join(c[i] for c, i in zip(self.choices, idx) if c[i] != EMPTY)

    def prompts(self, idx: Sequence[int]):
        """(positive, negative) prompts of a point."""
        return (self.text(idx), "") if self.kind == "positive" else (self.user, self.text(idx))


def search_space(user: str, kind: str, table) -> SearchSpace:
    """The synonym (positive) or antonym (negative) space of a grammar caption, single words only."""
    from common.prompts import caption_roles, split_words

    if kind not in ("positive", "negative"):  # the official misspelt 'synoym' silently gave another space
        raise ValueError(f"search space kind '{kind}': expected 'positive' (synonyms) or 'negative' (antonyms)")
    words = split_words(user)
    choices, slot = [], []
    for w, role in zip(words, caption_roles(words)):
        entry = table.entries.get(role, {}).get(w) if role else None
        alts = [] if entry is None else list(entry.synonyms if kind == "positive" else entry.antonyms)
        alts = [a for a in alts if " " not in a]
        if alts:
            slot.append(len(choices))
            choices.append([w if kind == "positive" else EMPTY, *alts])
        else:
            slot.append(-1)
    return SearchSpace(user, kind, words, choices, slot)


# --------------------------------------------------------------------------- relaxation (Sec. 4.1)
def init_logits(space: SearchSpace) -> List[torch.Tensor]:
    """One logit vector per slot, [1, 0, ..., 0] (the official init: the user's word / no negative word)."""
    return [F.one_hot(torch.tensor(0), len(c)).float().requires_grad_(True) for c in space.choices]


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """Soft Gumbel-softmax sample: softmax((logits + g) / tau), g = -log(Exp(1)) (as torch's F.gumbel_softmax,
    which draws g from exponential_(); same seed -> same sample)."""
    g = -torch.empty_like(logits).exponential_(generator=generator).log()
    return ((logits + g) / tau).softmax(-1)


def mixed_embeds(encoder, space: SearchSpace, weights: List[torch.Tensor]) -> torch.Tensor:
    """inputs_embeds [1, L, W] of the relaxed prompt: BOS, per word its embedding or the slot's mixture
    weights @ choice embeddings [K, W], EOS, padding (as the official get_mixed_embeds). The negative space
    places one position per slot; the EMPTY choice's embedding is the padding token's."""
    def row(word):
        return encoder.embed_ids(torch.tensor([[encoder.pad if word == EMPTY else encoder.word_id(word)]]))[0, 0]

    def slot_mix(s):
        return weights[s] @ torch.stack([row(c) for c in space.choices[s]])  # [K] @ [K, W]

    if space.kind == "positive":
        body = [slot_mix(s) if s >= 0 else row(w) for w, s in zip(space.words, space.slot_of_word)]
    else:
        body = [slot_mix(s) for s in range(len(space.choices))]
    seq = [row_id(encoder, encoder.bos), *body, row_id(encoder, encoder.eos)]
    pad = row_id(encoder, encoder.pad)
    seq += [pad] * (encoder.context_length - len(seq))
    return torch.stack(seq)[None]


def row_id(encoder, token_id: int) -> torch.Tensor:
    return encoder.embed_ids(torch.tensor([[token_id]]))[0, 0]


# --------------------------------------------------------------------------- loss (model/sd.py)
def spherical_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """2 arcsin^2(||x - y|| / 2) of the normalised features (official spherical_dist_loss); [N, E] -> [N]."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def clip_loss(clip_model, images: torch.Tensor, user_feature: torch.Tensor) -> torch.Tensor:
    """Mean spherical distance between the scene CLIP's image features of images in [-1, 1] [N, 3, H, W] and
    the user prompt's text feature [1, E] (differentiable in the images)."""
    return spherical_dist(clip_model.encode_image(images), user_feature).mean()


# --------------------------------------------------------------------------- sampling with gradients
def ddim_step(schedule, x, eps, t, t_prev):
    """Deterministic DDIM (eta 0): x0-hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), then to t_prev."""
    a_t = schedule.alpha_bar(t)
    a_p = schedule.alpha_bar(t_prev) if t_prev >= 0 else torch.tensor(1.0)
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    return a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps, x0


def guided_eps(model, x, t, hidden, negative, scale):
    """CFG with the negative prompt's hidden states in the null prompt's place."""
    tt = torch.full((x.shape[0],), int(t), dtype=torch.long)
    e_c, e_n = model.eps(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([hidden, negative])).chunk(2)
    return e_n + scale * (e_c - e_n)


def shortcut_x0(model, schedule, steps, x_T, hidden, negative, scale, k):
    """Sec. 4.2: k sampler steps without grad, then one denoiser call WITH grad -> x0-hat [N, 3, H, W]."""
    x = x_T
    with torch.no_grad():
        for i in range(k):
            x, _ = ddim_step(schedule, x, guided_eps(model, x, steps[i], hidden.detach(), negative.detach(), scale),
                             steps[i], steps[i + 1] if i + 1 < len(steps) else -1)
    eps = guided_eps(model, x, steps[k], hidden, negative, scale)
    return ddim_step(schedule, x, eps, steps[k], -1)[1]


def full_x0(model, schedule, steps, x_T, hidden, negative, scale):
    """The full-backprop reference: every sampler step with grad, the final sample."""
    x = x_T
    for i, t in enumerate(steps):
        x, x0 = ddim_step(schedule, x, guided_eps(model, x, t, hidden, negative, scale), t,
                          steps[i + 1] if i + 1 < len(steps) else -1)
    return x0


def step_schedule(i: int, nfe: int, start: int = 15, every: int = 2, ref_steps: int = 50) -> int:
    """The official "step-15-2" schedule t = 15 + floor(i / 2) of 50 steps, scaled to `nfe` steps (the index of
    the step that gets the gradient, counted from the noise end)."""
    return min(nfe - 1, math.floor((start + i // every) * nfe / ref_steps))


# --------------------------------------------------------------------------- GPO (Sec. 4)
@dataclass
class GPOResult:
    best_logits: List[torch.Tensor]  # a COPY of the best iterate (the official aliased the live logits)
    best_loss: float
    losses: List[float]
    last_logits: List[torch.Tensor]  # the live iterate after the last step


def gpo(space, grad_loss: Callable, iters: int, generator: torch.Generator, lr=0.1, momentum=0.5, clip=0.025,
        tau=1.0, clamp=(0.0, 3.0)) -> GPOResult:
    """Gradient prompt optimisation: per iteration a Gumbel-softmax mixture, the shortcut loss
    grad_loss(weights, i), grad clip +-clip, RMSprop(lr, momentum), logits clamped to [0, 3]."""
    logits = init_logits(space)
    opt = torch.optim.RMSprop(logits, lr=lr, momentum=momentum)
    best, best_loss, losses = [t.detach().clone() for t in logits], math.inf, []
    for i in range(iters):
        opt.zero_grad()
        loss = grad_loss([gumbel_softmax(a, tau, generator) for a in logits], i)
        losses.append(float(loss.detach()))
        if losses[-1] < best_loss:  # the iterate that gave this loss, copied before the step moves it
            best_loss, best = losses[-1], [a.detach().clone() for a in logits]
        loss.backward()
        torch.nn.utils.clip_grad_value_(logits, clip)
        opt.step()
        with torch.no_grad():
            for a in logits:
                a.clamp_(*clamp)
    return GPOResult(best, best_loss, losses, [a.detach() for a in logits])


def sample_points(logits: List[torch.Tensor], n: int, rng: np.random.Generator, max_tries: int = 200) -> List[tuple]:
    """Up to n DISTINCT Gumbel-argmax points of the logits (the argmax of the logits first)."""
    pts = [tuple(int(a.argmax()) for a in logits)]
    for _ in range(max_tries):
        if len(pts) >= n:
            break
        p = tuple(int(np.argmax(a.numpy() + rng.gumbel(size=a.shape))) for a in logits)
        if p not in pts:
            pts.append(p)
    return pts


# --------------------------------------------------------------------------- EPO and random search
def random_points(space, n: int, rng: np.random.Generator) -> List[tuple]:
    return [tuple(int(rng.integers(len(c))) for c in space.choices) for _ in range(n)]


def mutate(p: tuple, space, rng, prob: float = 0.1) -> tuple:
    """Each slot re-drawn uniformly with probability prob (the official mutation rate 0.1)."""
    return tuple(int(rng.integers(len(c))) if rng.random() < prob else i for i, c in zip(p, space.choices))


def crossover(a: tuple, b: tuple, rng) -> tuple:
    """Uniform crossover: each slot from either parent."""
    return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))


def epo(space, evaluate: Callable, budget: int, population: List[tuple], rng, keep: int, prob: float = 0.1):
    """Evolutionary prompt optimisation: evaluate the population, keep the `keep` best, refill by crossover +
    mutation; stops after `budget` evaluations. Returns the history [(point, loss)] in evaluation order."""
    history, seen = [], {}

    def ev(p):
        if p not in seen and len(history) < budget:
            seen[p] = evaluate(p)
            history.append((p, seen[p]))

    for p in population:
        ev(p)
    size = max(len(population), keep + 1)
    while len(history) < budget:
        parents = sorted(seen, key=seen.get)[:keep]
        children = [mutate(crossover(*(parents[j] for j in rng.integers(len(parents), size=2)), rng), space, rng, prob)
                    for _ in range(size)]
        before = len(history)
        for c in children:
            ev(c)
        if len(history) == before:  # nothing new: widen with random points (small spaces)
            for c in random_points(space, size, rng):
                ev(c)
            if len(history) == before:
                break
    return history


def best_so_far(history) -> List[float]:
    out, b = [], math.inf
    for _, loss in history:
        b = min(b, loss)
        out.append(b)
    return out
