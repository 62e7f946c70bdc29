"""Prompt words over the scene grammar: the synonym / antonym table (common/prompt_words.yaml), the role
of each word of a caption, synonym substitution for training, and a lenient prompt parser.

A caption reads "<count> <noun>: <size> <colour> <digit> <vertical> <horizontal>, ..." (common/scenes.py).
The table gives, per role and grammar word, single-word synonyms (new surface words the scene CLIP's
tokenizer does not know) and antonyms (grammar words of the same role, the designated opposite first).
The parser maps synonyms back to their grammar word, so a judge that reads the ground truth (the oracle
of common/judges.py) understands prompts written with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from common.scenes import COLOURS, COUNT_WORDS, DIGIT_WORDS, POSITIONS, SIZES

TABLE_PATH = Path(__file__).with_name("prompt_words.yaml")
OBJECT_ROLES = ("size", "colour", "digit", "vertical", "horizontal")  # the words of one object, in caption order
HEAD_ROLES = ("count", "noun")
ROLES = HEAD_ROLES + OBJECT_ROLES


def grammar_words(role: str) -> List[str]:
    """The grammar's own words of a role (what the scene generator writes)."""
    return {
        "count": [COUNT_WORDS[k].split()[0] for k in sorted(COUNT_WORDS)],
        "noun": ["digit", "digits"],
        "size": list(SIZES), "colour": list(COLOURS), "digit": list(DIGIT_WORDS),
        "vertical": ["top", "bottom"], "horizontal": ["left", "right"],
    }[role]


@dataclass(frozen=True)
class Entry:
    synonyms: Tuple[str, ...]
    antonyms: Tuple[str, ...]


@dataclass
class WordTable:
    """role -> grammar word -> Entry; `synonym_words` fixes the order of the new embedding rows."""

    entries: Dict[str, Dict[str, Entry]]
    synonym_words: List[str] = field(init=False)
    canonical: Dict[str, Tuple[str, str]] = field(init=False)  # synonym -> (role, grammar word)

    def __post_init__(self):
        self.synonym_words = [s for role in ROLES for w, e in self.entries.get(role, {}).items() for s in e.synonyms]
        self.canonical = {s: (role, w) for role in ROLES for w, e in self.entries.get(role, {}).items()
                          for s in e.synonyms}

    def groups(self) -> List[Tuple[str, str]]:
        """(role, grammar word) of every entry with synonyms, in table order: the substitution groups."""
        return [(role, w) for role in ROLES for w, e in self.entries.get(role, {}).items() if e.synonyms]

    def synonyms(self, role: str, word: str) -> Tuple[str, ...]:
        return self.entries[role][word].synonyms

    def antonyms(self, role: str, word: str) -> Tuple[str, ...]:
        return self.entries[role][word].antonyms


@lru_cache(maxsize=4)
def load_table(path: Path = TABLE_PATH) -> WordTable:
    """The table in `path` (default: common/prompt_words.yaml); roles and grammar words are checked."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
    unknown = set(raw) - set(ROLES)
    if unknown:
        raise ValueError(f"{path}: unknown roles {sorted(unknown)}; known: {list(ROLES)}")
    entries = {}
    for role, words in raw.items():
        bad = set(words) - set(grammar_words(role))
        if bad:
            raise ValueError(f"{path}: {role} words {sorted(bad)} are not grammar words {grammar_words(role)}")
        entries[role] = {w: Entry(tuple(e.get("synonyms", ())), tuple(e.get("antonyms", ()))) for w, e in words.items()}
    return WordTable(entries)


# --------------------------------------------------------------------------- words and roles
def split_words(text: str) -> List[str]:
    """Words and the punctuation ':' and ',' as separate items (as the scene CLIP's tokenizer splits)."""
    return re.findall(r"[^\s:,]+|[:,]", text)


def caption_roles(words: Sequence[str]) -> List[Optional[str]]:
    """The grammar role of each word of a grammar caption (None for punctuation and surplus words)."""
    roles: List[Optional[str]] = []
    head, k = True, 0
    for w in words:
        if w in (":", ","):
            roles.append(None)
            head, k = False, 0
            continue
        seq = HEAD_ROLES if head else OBJECT_ROLES
        roles.append(seq[k] if k < len(seq) else None)
        k += 1
    return roles


def substitution_groups(text: str, table: WordTable) -> List[int]:
    """Per word of a grammar caption: 1 + the index of its (role, word) in `table.groups()`, 0 = none."""
    index = {g: i + 1 for i, g in enumerate(table.groups())}
    return [index.get((r, w), 0) for w, r in zip(split_words(text), caption_roles(split_words(text)))]


# --------------------------------------------------------------------------- parsing
@dataclass
class ParsedObject:
    """What a prompt states about one object; None = not stated."""

    size: Optional[str] = None
    colour: Optional[str] = None
    digit: Optional[int] = None
    position: Optional[int] = None  # index into common.scenes.POSITIONS, when both words are stated
    vertical: Optional[str] = None
    horizontal: Optional[str] = None


@dataclass
class ParsedPrompt:
    count: Optional[int]
    objects: List[ParsedObject]


def _lookup(word: str, roles: Sequence[str], table: WordTable) -> Optional[Tuple[str, str]]:
    """(role, grammar word) of `word` among `roles`: a grammar word of the first such role, else a synonym."""
    for role in roles:
        if word in grammar_words(role):
            return role, word
    hit = table.canonical.get(word)
    return hit if hit is not None and hit[0] in roles else None


def parse_prompt(text: str, table: Optional[WordTable] = None) -> ParsedPrompt:
    """Lenient parse: the words before ':' give the count, each ','-separated group after it one object;
    synonyms are read as their grammar word, unknown words are ignored and unstated attributes stay None
    (prompts an optimiser edited need not be complete captions)."""
    table = table or load_table()
    head, _, body = text.partition(":") if ":" in text else ("", "", text)
    count = None
    for w in split_words(head):
        hit = _lookup(w, ("count",), table)
        if hit:
            count = grammar_words("count").index(hit[1]) + 1
    objects = []
    for group in body.split(","):
        o = ParsedObject()
        for w in split_words(group):
            hit = _lookup(w, OBJECT_ROLES, table)
            if hit is None:
                continue
            role, word = hit
            setattr(o, role, DIGIT_WORDS.index(word) if role == "digit" else word)
        if o.vertical and o.horizontal:
            o.position = POSITIONS.index(f"{o.vertical} {o.horizontal}")
        if any(v is not None for v in (o.size, o.colour, o.digit, o.vertical, o.horizontal)):
            objects.append(o)
    return ParsedPrompt(count, objects)


def canonical_text(text: str, table: Optional[WordTable] = None) -> str:
    """The prompt with each synonym replaced by its grammar word (the caption the model was shown)."""
    table = table or load_table()
    out = " ".join(table.canonical.get(w, (None, w))[1] for w in split_words(text))
    return out.replace(" :", ":").replace(" ,", ",")
