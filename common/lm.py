"""Small causal language models: an offline word-level tokenizer, a `transformers` GPT-2 built from
params, corpus packing, and answer scoring.

Scoring an answer. A question is answered by continuing a prompt until the end of the line. For a
word-level tokenizer an answer string has exactly one token sequence a_1..a_n, so

- greedy decoding returns the answer iff, teacher-forced on the prompt + answer, the argmax at each
  answer position is a_i and the argmax after a_n ends the line (`greedy_correct`);
- one sample at temperature T with top-k truncation returns the answer with probability
  prod_i q(a_i) * q(end), q = softmax(logits / T) over the k largest logits (`sample_probability`),
  the same truncation order as `transformers`' generation (temperature, then top-k, ties kept).

One forward pass gives both; `greedy_decode` / `sample_decode` decode literally and are the
reference the tests hold the shortcut to.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
NL = "\n"
# words, single punctuation marks and newlines are tokens; other whitespace separates them
TOKEN_PATTERN = r"\w+|[^\w\s]|\n"


# --------------------------------------------------------------------------- tokenizer
def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
                                    pre_tokenizers.Split(Regex(TOKEN_PATTERN), behavior="isolated")])


def build_tokenizer(texts: Sequence[str]):
    """A word-level `PreTrainedTokenizerFast` whose vocabulary is every token of `texts`.

    Ids are specials first, then tokens by descending count, ties by string: a pure function of texts.
    """
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    pre = _pre_tokenizer()
    counts = Counter(tok for t in texts for tok, _ in pre.pre_tokenize_str(t))
    vocab = {s: i for i, s in enumerate([PAD, BOS, EOS, UNK])}
    for tok, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        vocab.setdefault(tok, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tk.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK)


def encode(tokenizer, text: str) -> List[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def newline_id(tokenizer) -> int:
    """The token that ends a line (its last token for tokenizers that prefix a space marker)."""
    return encode(tokenizer, NL)[-1]


def stop_ids(tokenizer) -> List[int]:
    """Tokens that end an answer: the end of the line, or the end of the text."""
    return sorted({newline_id(tokenizer), tokenizer.eos_token_id})


# --------------------------------------------------------------------------- model
@dataclass
class LMSpec:
    n_layer: int
    n_embd: int
    n_head: int
    n_positions: int
    dropout: float = 0.0


def build_model(spec: LMSpec, tokenizer, seed: int):
    """A GPT-2 (`transformers.GPT2LMHeadModel`) with tied embeddings, initialised from `seed`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=spec.n_positions, n_embd=spec.n_embd,
                     n_layer=spec.n_layer, n_head=spec.n_head, resid_pdrop=spec.dropout, embd_pdrop=spec.dropout,
                     attn_pdrop=spec.dropout, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(cfg)


def pack(docs: Sequence[str], tokenizer, seq_len: int) -> torch.Tensor:
    """Concatenate <bos> doc <eos> ... and cut into [N, seq_len] training windows (the tail is dropped)."""
    ids: List[int] = []
    for d in docs:
        ids += [tokenizer.bos_token_id] + encode(tokenizer, d) + [tokenizer.eos_token_id]
    n = len(ids) // seq_len
    if n == 0:
        raise ValueError(f"corpus of {len(ids)} tokens is shorter than one window of {seq_len}")
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).reshape(n, seq_len)


def lm_loss(model, ids: torch.Tensor, generator=None) -> torch.Tensor:
    """Next-token cross-entropy over every position of packed windows (a `common.training` loss_fn)."""
    return model(input_ids=ids, labels=ids).loss


def save_lm(model, tokenizer, out_dir: Path, meta: dict):
    """Model + tokenizer + meta.json into `out_dir`, atomically (temp dir, then rename)."""
    from .knowledge import write_dir_atomic

    def write(tmp: str):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (Path(tmp) / "meta.json").write_text(json.dumps(meta, indent=2))

    write_dir_atomic(out_dir, write)


def is_local_path(path) -> bool:
    """A filesystem path rather than a hub id ("name" or "org/name"): absolute, explicitly relative, or existing."""
    s = str(path)
    return Path(s).is_absolute() or s.startswith((".", "~")) or Path(s).exists() or len(Path(s).parts) > 2


def load_lm(path, stage: str = "pretrain_lm", hint: Optional[str] = None, **config_overrides):
    """(model in eval mode, tokenizer, meta) from a folder written by `save_lm`, or any local/hub causal LM
    (meta is then empty). `config_overrides` (e.g. dropout) go to `from_pretrained`.

    A local folder that is missing or unreadable is a UserError naming it and the stage that makes it
    (looked up in the DVC outs, else `stage`; `hint` instead for a path the user set); a hub id is left to
    `transformers`. TypeError / ValueError from `config_overrides` a model family does not take propagate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .config import reading, require

    p = Path(path)
    local = is_local_path(path)
    if local:
        require(p, stage, marker="config.json", hint=hint)

    def guard(at=p, passthrough=()):
        return reading(at, stage, hint=hint, passthrough=passthrough) if local else nullcontext()

    with guard():
        tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:  # e.g. Llama/Mistral: padding is masked anyway
        tok.pad_token = tok.eos_token
    with guard(passthrough=(TypeError, ValueError) if config_overrides else ()):
        model = AutoModelForCausalLM.from_pretrained(str(path), **config_overrides).eval()
    with guard(p / "meta.json"):
        meta = json.loads((p / "meta.json").read_text()) if (p / "meta.json").is_file() else {}
    return model, tok, meta


# --------------------------------------------------------------------------- answer scoring
def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _right_padded(seqs: Sequence[Sequence[int]], pad: int) -> Tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def truncated_log_softmax(logits: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """log q of sampling at `temperature` among the `top_k` largest logits (ties at the k-th kept); -inf elsewhere."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.log_softmax(logits / temperature, dim=-1)


@torch.no_grad()
def score_answers(model, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], stops: Sequence[int],
                  pad_id: int, temperature: float = 1.0, top_k: int = 0, batch_size: int = 256
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(greedy_correct [N] bool, sample_probability [N] float64) of answer token lists (without the line
    end) after prompt token lists, from one teacher-forced pass; see the module docstring."""
    stops_t = torch.tensor(list(stops), dtype=torch.long)
    greedy, prob = torch.zeros(len(prompts), dtype=torch.bool), torch.zeros(len(prompts), dtype=torch.float64)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(answers[i]))  # batches of similar length
    for sl in _batches(len(prompts), batch_size):
        idx = order[sl]
        P, A = [prompts[i] for i in idx], [answers[i] for i in idx]
        ids, mask = _right_padded([list(p) + list(a) for p, a in zip(P, A)], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        n = max(len(a) for a in A) + 1  # answer positions + the end of the line
        lens = torch.tensor([len(a) for a in A])
        start = torch.tensor([len(p) - 1 for p in P])
        j = torch.arange(n)
        valid = j[None, :] <= lens[:, None]  # [B, n]: positions a_1..a_len and the end
        pos = (start[:, None] + j[None, :]).clamp(max=ids.shape[1] - 1)
        lg = logits[torch.arange(len(P))[:, None], pos]  # [B, n, V]
        tgt = torch.zeros(len(P), n, dtype=torch.long)
        for i, a in enumerate(A):
            tgt[i, : len(a)] = torch.tensor(list(a), dtype=torch.long)
        is_end = j[None, :] == lens[:, None]
        am = lg.argmax(-1)
        hit = torch.where(is_end, torch.isin(am, stops_t), am == tgt) | ~valid
        lq = truncated_log_softmax(lg, temperature, top_k)
        lp_tok = lq.gather(-1, tgt[..., None]).squeeze(-1)
        lp_end = torch.logsumexp(lq[..., stops_t], -1)
        lp = torch.where(is_end, lp_end, lp_tok).masked_fill(~valid, 0.0).sum(1)
        greedy[idx], prob[idx] = hit.all(1), lp.double().exp()
    return greedy, prob


@torch.no_grad()
def greedy_decode(model, prompts: Sequence[Sequence[int]], stops: Sequence[int], pad_id: int,
                  max_new_tokens: int = 8) -> List[List[int]]:
    """Literal greedy decoding (no cache): the generated tokens up to, not including, the first stop token."""
    return _decode(model, prompts, stops, pad_id, max_new_tokens, None, 1.0, 0)


@torch.no_grad()
def sample_decode(model, prompts: Sequence[Sequence[int]], stops: Sequence[int], pad_id: int, temperature: float,
                  top_k: int, generator: torch.Generator, max_new_tokens: int = 8) -> List[List[int]]:
    """Literal ancestral sampling at `temperature` with top-k truncation (no cache)."""
    return _decode(model, prompts, stops, pad_id, max_new_tokens, generator, temperature, top_k)


def _decode(model, prompts, stops, pad_id, max_new_tokens, generator, temperature, top_k):
    out: List[List[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    seqs = [list(p) for p in prompts]
    for _ in range(max_new_tokens):
        live = [i for i, d in enumerate(done) if not d]
        if not live:
            break
        ids, mask = _right_padded([seqs[i] for i in live], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        last = logits[torch.arange(len(live)), mask.sum(1) - 1]
        if generator is None:
            nxt = last.argmax(-1)
        else:
            q = truncated_log_softmax(last, temperature, top_k).exp()
            nxt = torch.multinomial(q, 1, generator=generator).squeeze(1)
        for i, t in zip(live, nxt.tolist()):
            if t in stops:
                done[i] = True
            else:
                out[i].append(t)
                seqs[i].append(t)
    return out
