"""Stage `categorize`: SliCK categories of every train and test question for the base model.

For each question: N_ex random k-shot prompts from the dev questions of its relation, one greedy
answer and n samples (T, top-k) per prompt, exact match -> P(T=0), P(T>0) -> category (method.py).
Writes reports/new_knowledge/slick.json (one row per question, counts per split and per
pretraining frequency).
"""

import json
import sys
import time
from collections import Counter, defaultdict

import numpy as np
import torch

from common.config import load_config, resolve
from common.lm import greedy_decode, sample_decode, score_answers, stop_ids
from common.seeding import seed_everything
from papers.new_knowledge.config import NewKnowledgeConfig
from papers.new_knowledge.inputs import answer_ids, load_base, load_questions, prompt_ids
from papers.new_knowledge.method import (
    CATEGORIES,
    exact_match,
    exemplar_sets,
    few_shot_prompt,
    p_correct,
    sample_hits,
    slick_category,
)

PAPER = "new_knowledge"


def per_prompt_hits(model, tok, prompts, answers, s, rng):
    """(greedy hits [n], sample hit counts [n]) for prompt texts and gold answers, with the configured estimator."""
    stops = stop_ids(tok)
    ids = [prompt_ids(tok, p) for p in prompts]
    if s.estimator == "teacher_forced":
        greedy, p = score_answers(model, ids, [answer_ids(tok, a) for a in answers], stops, tok.pad_token_id,
                                  s.temperature, s.top_k, s.batch_size)
        return greedy.numpy(), sample_hits(p.numpy(), s.n_samples, rng)
    if s.estimator == "decode":
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        g_out, hits = [], []
        for i in range(0, len(ids), s.batch_size):
            g_out += greedy_decode(model, ids[i:i + s.batch_size], stops, tok.pad_token_id, s.max_new_tokens)
        greedy = np.array([exact_match(tok.decode(o), a) for o, a in zip(g_out, answers)])
        for pid, a in zip(ids, answers):
            out = sample_decode(model, [pid] * s.n_samples, stops, tok.pad_token_id, s.temperature, s.top_k, gen,
                                s.max_new_tokens)
            hits.append(sum(exact_match(tok.decode(o), a) for o in out))
        return greedy, np.array(hits)
    raise ValueError(f"slick.estimator must be 'teacher_forced' or 'decode', got {s.estimator!r}")


def main(argv=None):
    cfg = load_config(NewKnowledgeConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    s = cfg.slick
    t0 = time.time()
    model, tok, meta = load_base(cfg)
    if s.estimator == "teacher_forced" and not meta:
        raise ValueError("slick.estimator=teacher_forced needs the word-level knowledge LM (one token sequence per "
                         "answer); use slick.estimator=decode with a pretrained LLM (base_lm)")
    kb = load_questions(cfg)
    pools = defaultdict(list)
    for r in kb["dev"]:
        pools[r["relation"]].append((r["question"], r["object"]))

    rows, prompts, answers = [], [], []
    for split in s.splits:
        for r in kb[split]:
            if not pools[r["relation"]]:
                raise ValueError(f"relation {r['relation']!r} has no dev questions to draw exemplars from")
            rng = np.random.default_rng([s.seed, len(rows)])
            for ex in exemplar_sets(pools[r["relation"]], s.n_prompts, s.k_shot, rng):
                prompts.append(few_shot_prompt(ex, r["question"]))
                answers.append(r["object"])
            rows.append({"id": r["id"], "split": split, "relation": r["relation"], "question": r["question"],
                         "answer": r["object"], "frequency": r["frequency"]})
    trained = meta.get("config", {}).get("train", {}).get("seq_len")
    longest = max(len(prompt_ids(tok, p)) + len(answer_ids(tok, a)) + 1 for p, a in zip(prompts, answers))
    if trained and longest > trained:
        raise ValueError(f"a {s.k_shot}-shot probe takes {longest} tokens but the base LM was pretrained on windows "
                         f"of {trained} (knowledge_lm.train.seq_len): positions beyond are untrained; raise it or "
                         f"lower slick.k_shot")
    greedy, hits = per_prompt_hits(model, tok, prompts, answers, s, np.random.default_rng([s.seed, 1]))
    n = s.n_prompts
    for q, row in enumerate(rows):
        pg, ps = p_correct(greedy[q * n:(q + 1) * n], hits[q * n:(q + 1) * n], s.n_samples)
        row.update({"p_greedy": pg, "p_sample": ps, "category": slick_category(pg, ps)})

    counts = {sp: {c: sum(r["category"] == c for r in rows if r["split"] == sp) for c in CATEGORIES} for sp in s.splits}
    by_freq = defaultdict(Counter)
    for r in rows:
        by_freq[r["frequency"]][r["category"]] += 1
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows, "counts": counts,
        "by_frequency": {str(f): {c: by_freq[f][c] for c in CATEGORIES} for f in sorted(by_freq)},
        "exposures_per_frequency": meta.get("exposures_per_frequency", {}),
        "base_lm": cfg.base_lm or "models/knowledge_lm", "base_lm_params": sum(p.numel() for p in model.parameters()),
        "inferences": len(prompts) * (1 + s.n_samples), "forward_passes": len(prompts),
        "seconds": time.time() - t0,
    }
    (out / "slick.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({"counts": counts, "by_frequency": result["by_frequency"], "seconds": round(result["seconds"], 1)}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
