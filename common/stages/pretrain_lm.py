"""Root stage `pretrain_lm`: a small causal LM (GPT-2, from scratch) pretrained on the knowledge corpus.

The tokenizer is built offline from the corpus and the question/answer formats (word level), the
corpus is packed into windows and trained for `knowledge_lm.train.epochs` passes with the shared
Accelerate loop (checkpoints, resume, NaN guard). A fact of frequency k is seen k x epochs times.
Writes models/knowledge_lm (model + tokenizer + meta.json) and metrics/knowledge_lm.json with a
sanity check: zero-shot greedy accuracy on every fact, per pretraining frequency.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

import common.knowledge
import common.lm
import common.training
from common.config import RootConfig, budget_config, load_config, resolve, steps_for, to_dict
from common.knowledge import all_texts, load_corpus, load_knowledge_base, qa_line
from common.lm import LMSpec, build_model, build_tokenizer, encode, lm_loss, pack, save_lm, score_answers, stop_ids
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train


def zero_shot_accuracy(model, tok, rows) -> torch.Tensor:
    """Greedy exact match of 'Q: <question> A:' -> answer for each fact (no exemplars)."""
    prompts = [[tok.bos_token_id] + encode(tok, qa_line(r["question"])) for r in rows]
    answers = [encode(tok, r["object"]) for r in rows]
    greedy, _ = score_answers(model, prompts, answers, stop_ids(tok), tok.pad_token_id)
    return greedy


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    m, t = cfg.knowledge_lm.model, cfg.knowledge_lm.train
    seed_everything(t.seed)
    data_dir = resolve(cfg, cfg.paths.data, "knowledge")
    kb = load_knowledge_base(data_dir / "facts")
    docs = load_corpus(data_dir / "corpus")
    tok = build_tokenizer(docs + all_texts(kb))
    windows = pack(docs, tok, t.seq_len)
    if t.seq_len > m.n_positions:
        raise ValueError(f"knowledge_lm.train.seq_len={t.seq_len} exceeds knowledge_lm.model.n_positions={m.n_positions}")
    steps = steps_for(t.epochs * len(windows), t.batch_size)
    tcfg = budget_config(steps, warmup_steps=t.warmup_steps,
                         batch_size=t.batch_size, lr=t.lr, lr_schedule=t.lr_schedule, weight_decay=t.weight_decay,
                         grad_clip=t.grad_clip, checkpoint_every=t.checkpoint_every,
                         keep_checkpoints=t.keep_checkpoints, seed=t.seed, log_every=t.log_every)
    model = build_model(LMSpec(m.n_layer, m.n_embd, m.n_head, m.n_positions, m.dropout), tok, t.seed)
    d = to_dict(cfg)
    run_id = fingerprint({"knowledge": d["knowledge"], "knowledge_lm": d["knowledge_lm"]},
                         [Path(__file__), Path(common.lm.__file__), Path(common.knowledge.__file__),
                          Path(common.training.__file__)])
    res = train(model, lm_loss, (windows,), tcfg, resolve(cfg, cfg.paths.runs, "knowledge_lm", "checkpoints"),
                desc="knowledge_lm", use_ema=False, run_fingerprint=run_id)
    if not res.is_main_process:
        return
    model = res.model.eval()

    rows = [r for split in kb.values() for r in split]
    acc = zero_shot_accuracy(model, tok, rows)
    by_freq = defaultdict(list)
    for r, a in zip(rows, acc.tolist()):
        by_freq[r["frequency"]].append(a)
    exposures = {str(f): f * t.epochs for f in sorted(by_freq)}
    params = sum(p.numel() for p in model.parameters())
    meta = {"params": params, "steps": steps, "tokens_seen": steps * t.batch_size * t.seq_len,
            "corpus_tokens": windows.numel(), "epochs": t.epochs, "vocab_size": len(tok),
            "exposures_per_frequency": exposures, "config": d["knowledge_lm"]}
    save_lm(model, tok, resolve(cfg, cfg.paths.models, "knowledge_lm"), meta)
    metrics = {"params": params, "steps": steps, "vocab_size": len(tok), "corpus_tokens": windows.numel(),
               "final_loss": res.history[-1]["loss"] if res.history else float("nan"),
               "train_seconds": res.train_seconds, "resumed_from_step": res.resumed_from_step,
               "zero_shot_accuracy": float(acc.float().mean()),
               "zero_shot_accuracy_by_frequency": {str(f): sum(v) / len(v) for f, v in sorted(by_freq.items())}}
    path = resolve(cfg, "metrics", "knowledge_lm.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    flat = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
    flat.update({f"zero_shot_accuracy.freq{f}": v for f, v in metrics["zero_shot_accuracy_by_frequency"].items()})
    log_run(cfg, "shared", "pretrain_lm", {"knowledge": d["knowledge"], "knowledge_lm": d["knowledge_lm"]}, flat,
            seed=t.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
