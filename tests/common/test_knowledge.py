"""The knowledge base of real facts, the pretraining corpus, the word-level tokenizer, and answer
scoring: the teacher-forced shortcut against literal greedy decoding and literal sampling."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from common.config import TrainConfig
from common.knowledge import (
    RELATIONS,
    SPLITS,
    all_texts,
    build_knowledge_base,
    country_facts,
    frequency_buckets,
    load_entity_questions,
    load_knowledge_base,
    pretraining_corpus,
    qa_line,
    save_knowledge_base,
    statement_lines,
)
from common.lm import (
    LMSpec,
    build_model,
    build_tokenizer,
    encode,
    greedy_decode,
    lm_loss,
    pack,
    sample_decode,
    score_answers,
    stop_ids,
    truncated_log_softmax,
)
from common.training import train

FREQS, WEIGHTS = [0, 2, 6, 20], [2, 1, 1, 1]


@pytest.fixture(scope="module")
def facts():
    return country_facts()


@pytest.fixture(scope="module")
def kb(facts):
    return build_knowledge_base(list(RELATIONS), [0.5, 0.15, 0.35], FREQS, WEIGHTS, seed=0, facts=facts)


def _lookup(kb, relation, subject):
    return [r["object"] for rows in kb.values() for r in rows if r["relation"] == relation and r["subject"] == subject]


@pytest.mark.parametrize("relation, subject, obj", [
    ("capital", "France", "Paris"), ("capital", "Japan", "Tokyo"), ("capital", "Kenya", "Nairobi"),
    ("continent", "Japan", "Asia"), ("continent", "Brazil", "South America"), ("continent", "Kenya", "Africa"),
    ("currency", "Japan", "Yen"), ("currency", "France", "Euro"), ("currency", "Switzerland", "Swiss Franc"),
    ("language", "France", "French"), ("language", "Brazil", "Portuguese"),
    ("calling_code", "France", "33"), ("calling_code", "Japan", "81"),
    ("demonym", "France", "French"), ("demonym", "Japan", "Japanese"),
])
def test_contains_real_facts(kb, relation, subject, obj):
    assert _lookup(kb, relation, subject) == [obj]


def test_knowledge_base_size_and_questions(kb):
    rows = [r for split in SPLITS for r in kb[split]]
    per_rel = Counter(r["relation"] for r in rows)
    assert set(per_rel) == set(RELATIONS) and min(per_rel.values()) >= 200  # hundreds of entities per relation
    assert len({r["id"] for r in rows}) == len(rows)
    fr = next(r for r in rows if r["id"] == "capital:France")
    assert fr["question"] == "What is the capital of France?"
    assert qa_line(fr["question"], fr["object"]) == "Q: What is the capital of France? A: Paris\n"
    # calling codes are plain numbers; multi-valued demonyms are dropped
    assert all(r["object"].isdigit() for r in rows if r["relation"] == "calling_code")
    assert not any("," in r["object"] for r in rows)


def test_knowledge_base_is_deterministic(kb, facts, tmp_path):
    again = build_knowledge_base(list(RELATIONS), [0.5, 0.15, 0.35], FREQS, WEIGHTS, seed=0, facts=country_facts())
    assert again == kb
    other = build_knowledge_base(list(RELATIONS), [0.5, 0.15, 0.35], FREQS, WEIGHTS, seed=1, facts=facts)
    assert other != kb
    save_knowledge_base(kb, tmp_path / "facts")
    assert load_knowledge_base(tmp_path / "facts") == kb
    docs = pretraining_corpus(kb, 0.34, 2, 8, seed=0)
    assert docs == pretraining_corpus(kb, 0.34, 2, 8, seed=0)
    tok_a, tok_b = build_tokenizer(docs + all_texts(kb)), build_tokenizer(docs + all_texts(kb))
    assert tok_a.get_vocab() == tok_b.get_vocab()


def test_splits_are_disjoint_and_each_has_every_frequency(kb):
    for rel in RELATIONS:
        subjects = [{r["subject"] for r in kb[s] if r["relation"] == rel} for s in SPLITS]
        assert not (subjects[0] & subjects[1] or subjects[0] & subjects[2] or subjects[1] & subjects[2])
        for s in SPLITS:
            freqs = Counter(r["frequency"] for r in kb[s] if r["relation"] == rel)
            assert set(freqs) == set(FREQS)
            n = sum(freqs.values())
            assert abs(freqs[0] - 0.4 * n) <= 1  # weight 2 of 5


def test_frequency_buckets_exact_shares():
    f = frequency_buckets(10, [0, 5, 50], [2, 1, 1], np.random.default_rng(0))
    assert sorted(Counter(f.tolist()).items()) == [(0, 5), (5, 3), (50, 2)]  # 5, 2.5, 2.5 -> largest remainder
    with pytest.raises(ValueError, match="frequency_weights"):
        frequency_buckets(10, [0, 5], [1], np.random.default_rng(0))


def test_corpus_states_each_fact_exactly_frequency_times(kb):
    docs = pretraining_corpus(kb, 0.34, 2, 8, seed=0)
    lines = Counter(line + "\n" for d in docs for line in d.split("\n") if line)
    rows = [r for split in SPLITS for r in kb[split]]
    for r in rows[::7]:
        rel = RELATIONS[r["relation"]]
        forms = {qa_line(r["question"], r["object"])} | {t.format(s=r["subject"], o=r["object"]) + "\n"
                                                          for t in rel.statements}
        assert sum(lines[f] for f in forms) == r["frequency"], r["id"]
    # names of never-stated facts still appear (neutral lists): no answer is an untrained token
    unstated = [r for r in rows if r["frequency"] == 0]
    text = "".join(docs)
    assert all(r["object"] in text for r in unstated)
    # the QA share is what was asked for
    qa = sum(n for line, n in lines.items() if line.startswith("Q: "))
    assert abs(qa / sum(r["frequency"] for r in rows) - 0.34) < 0.02


def test_statement_lines_use_the_relation_templates():
    row = {"relation": "capital", "subject": "France", "object": "Paris", "question": "What is the capital of France?"}
    lines = statement_lines(row, 40, 0.5, np.random.default_rng(0))
    assert set(lines) == {"Q: What is the capital of France? A: Paris\n", "The capital of France is Paris\n",
                          "France has its capital in Paris\n"}


def test_tokenizer_covers_everything_and_keeps_newlines(kb):
    docs = pretraining_corpus(kb, 0.34, 1, 8, seed=0)
    tok = build_tokenizer(docs + all_texts(kb))
    ids = encode(tok, "Q: What is the capital of St. Helena? A: Jamestown\n")
    assert tok.convert_ids_to_tokens(ids) == ["Q", ":", "What", "is", "the", "capital", "of", "St", ".", "Helena",
                                              "?", "A", ":", "Jamestown", "\n"]
    assert tok.unk_token_id not in encode(tok, "".join(all_texts(kb)))
    assert encode(tok, "Q: x A:") + encode(tok, "Port of Spain") == encode(tok, "Q: x A: Port of Spain")
    w = pack(docs[:50], tok, 32)
    assert w.shape[1] == 32 and w[0, 0] == tok.bos_token_id


def test_entity_questions_loader(tmp_path):
    for split in SPLITS:
        (tmp_path / split).mkdir()
        (tmp_path / split / f"P36.{split}.json").write_text(json.dumps(
            [{"question": "What is the capital of France?", "answers": ["Paris"]},
             {"question": "What is the capital of Nowhere?", "answers": ["A", "B"]}]))
    eq = load_entity_questions(tmp_path)
    assert [len(eq[s]) for s in SPLITS] == [1, 1, 1]  # multi-answer questions dropped
    assert eq["test"][0]["relation"] == "P36" and eq["test"][0]["object"] == "Paris"


# --------------------------------------------------------------------------- scoring vs literal decoding
@pytest.fixture(scope="module")
def small_lm(tmp_path_factory):
    """A 1-layer GPT-2 trained for a few seconds on 2 relations: it answers some questions, not all."""
    kb = build_knowledge_base(["capital", "continent"], [0.5, 0.15, 0.35], [0, 4, 24], [1, 1, 1], seed=0,
                              max_entities=20)
    docs = pretraining_corpus(kb, 0.5, 1, 4, seed=0)
    tok = build_tokenizer(docs + all_texts(kb))
    model = build_model(LMSpec(1, 48, 2, 64), tok, seed=0)
    cfg = TrainConfig(steps=120, batch_size=16, lr=1e-2, warmup_steps=10, lr_schedule="cosine", checkpoint_every=1000,
                      keep_checkpoints=1, log_every=60, ema_decay=0.995, cond_dropout=0.1, seed=0)
    res = train(model, lm_loss, (pack(docs, tok, 32),), cfg, tmp_path_factory.mktemp("lm"), use_ema=False)
    return res.model.eval(), tok, kb


def test_greedy_shortcut_equals_greedy_decoding(small_lm):
    model, tok, kb = small_lm
    rows = kb["train"] + kb["test"]
    prompts = [[tok.bos_token_id] + encode(tok, qa_line(r["question"])) for r in rows]
    stops = stop_ids(tok)
    decoded = greedy_decode(model, prompts, stops, tok.pad_token_id, max_new_tokens=6)
    gold = [encode(tok, r["object"]) for r in rows]
    ok, _ = score_answers(model, prompts, gold, stops, tok.pad_token_id, batch_size=7)
    assert ok.tolist() == [d == g for d, g in zip(decoded, gold)]
    assert 0 < int(ok.sum()) < len(rows)  # the check is not vacuous
    ok2, _ = score_answers(model, prompts, [d for d in decoded], stops, tok.pad_token_id)
    finished = [len(d) < 6 for d in decoded]  # a decoded answer that ended within the budget is its own greedy answer
    assert all(o for o, f in zip(ok2.tolist(), finished) if f)


def test_sample_probability_matches_sampling(small_lm):
    """p_sample of the most frequent sampled answers vs their frequency among 4,000 literal samples."""
    model, tok, kb = small_lm
    row = next(r for r in kb["train"] if r["relation"] == "continent")
    prompt = [tok.bos_token_id] + encode(tok, qa_line(row["question"]))
    stops = stop_ids(tok)
    gen = torch.Generator().manual_seed(0)
    n = 4000
    samples = sample_decode(model, [prompt] * n, stops, tok.pad_token_id, 0.7, 5, gen, max_new_tokens=6)
    counts = Counter(tuple(s) for s in samples if len(s) < 6)
    top = [list(s) for s, _ in counts.most_common(3)]
    _, p = score_answers(model, [prompt] * len(top), top, stops, tok.pad_token_id, temperature=0.7, top_k=5)
    for s, pi in zip(top, p.tolist()):
        freq = counts[tuple(s)] / n
        assert abs(freq - pi) < 4 * np.sqrt(pi * (1 - pi) / n) + 1e-3, (tok.decode(s), freq, pi)


def test_truncated_softmax_keeps_top_k_and_ties():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, -1.0]])
    lq = truncated_log_softmax(logits, temperature=0.5, top_k=2)
    kept = torch.isfinite(lq)[0].tolist()
    assert kept == [True, False, True, True, False]  # the k-th value (2.0) is tied: both kept
    q = lq.exp()[0]
    z = np.exp(6.0) + 2 * np.exp(4.0)
    assert q.tolist() == pytest.approx([np.exp(6.0) / z, 0, np.exp(4.0) / z, np.exp(4.0) / z, 0])
