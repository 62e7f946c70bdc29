"""Root stage `build_knowledge`: the knowledge base of real facts and the pretraining corpus.

Writes data/knowledge/facts (a `datasets.DatasetDict`: train / dev / test questions with their
relation, answer and pretraining frequency) and data/knowledge/corpus (the documents the knowledge
LM is pretrained on), both with `save_to_disk`; a summary goes to metrics/knowledge.json.
"""

import json
import sys
from collections import Counter

from common.config import RootConfig, load_config, resolve
from common.knowledge import build_knowledge_base, pretraining_corpus, save_corpus, save_knowledge_base


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    k = cfg.knowledge
    kb = build_knowledge_base(k.relations, k.split, k.frequencies, k.frequency_weights, k.seed, k.max_entities)
    docs = pretraining_corpus(kb, k.qa_share, k.lexicon_mentions, k.lines_per_doc, k.seed)
    out = resolve(cfg, cfg.paths.data, "knowledge")
    out.mkdir(parents=True, exist_ok=True)
    save_knowledge_base(kb, out / "facts")
    save_corpus(docs, out / "corpus")

    rows = [r for split in kb.values() for r in split]
    summary = {
        "facts": {s: len(v) for s, v in kb.items()},
        "relations": dict(sorted(Counter(r["relation"] for r in rows).items())),
        "facts_per_frequency": {str(f): n for f, n in sorted(Counter(r["frequency"] for r in rows).items())},
        "stated_mentions": sum(r["frequency"] for r in rows),
        "documents": len(docs),
        "words": sum(len(d.split()) for d in docs),
    }
    path = resolve(cfg, "metrics", "knowledge.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
