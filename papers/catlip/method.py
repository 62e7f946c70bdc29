"""CatLIP (Mehta et al., 2024, arXiv:2404.15653): image-text pre-training recast as classification.

Instead of contrasting images with caption embeddings, CatLIP turns each caption into a set of
labels, the WordNet synsets of its nouns (Eq. 1), keeps the labels that occur often enough in the
training captions (vocabulary V, threshold V_tau), and trains an image-only model with a multi-label
binary cross-entropy loss over |V| classes. No text tower, no pairwise similarity matrix.

Caption -> labels follows the official `WordnetTaggedClassificationDataset._convert_caption_to_labels`
(apple/corenet): `caption_preprocessing` (unquote, '+' -> space, strip HTML tags and newlines, squeeze
spaces, ftfy, lower-case), word tokenisation, noun lemmatisation, then

- mode `wordnet` (the paper): the synset `wn.synset(f"{w}.n.01")`, kept only if its `name()` is
  exactly `f"{w}.n.01"` (a word whose first noun sense is filed under another head word is dropped:
  "automobile" -> car.n.01 gives no label); the label key is `f"{pos}{offset}"`, e.g. "n5928118";
- mode `lemma` (this repository's default, no WordNet data needed): the lemma itself is the label,
  with function words (`STOP_WORDS`) dropped in place of "has no noun synset".

Official quirk: the code computes POS tags but never uses them, so any word with a noun sense becomes
a label ("black" -> black.n.01). `nouns_only=False` keeps that behaviour (the default); `nouns_only=True`
keeps only words tagged NN* by a POS tagger.

The WordNet lookups, the lemmatiser and the POS tagger are injected (`Lexicon`), so the WordNet path
is tested without WordNet data by a fake lookup; `wordnet_lexicon()` builds the real one from nltk.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

# --------------------------------------------------------------------------- caption -> words


def caption_preprocessing(caption: str) -> str:
    """The official preprocessing (corenet `caption_preprocessing`): unquote, '+' -> ' ', drop HTML tags,
    strip newlines at the ends, squeeze spaces, fix mojibake with ftfy, strip, lower-case."""
    text = urllib.parse.unquote(str(caption)).replace("+", " ")
    text = re.sub(r"<.*?>", "", text).strip("\n")
    text = re.sub(" +", " ", text)
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs broken encodings; scene captions are plain ASCII
        text = html.unescape(text)
    return text.strip().lower()


_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def word_tokenize(text: str) -> List[str]:
    """Words of a preprocessed caption: alphanumeric runs (with inner hyphens/apostrophes).

    nltk.word_tokenize also emits punctuation tokens; those never have a noun synset, so dropping them
    here gives the same labels without the punkt data."""
    return _WORD.findall(text)


# Function words: the `lemma` mode's stand-in for "has no noun synset" (articles, prepositions,
# conjunctions, pronouns, auxiliaries). Content words stay, as in the official code ("black").
STOP_WORDS = frozenset(
    "a an the of in on at to for from by with without into onto over under and or but nor not no is are was "
    "were be been being am it its this that these those there here he she they we you i me my your his her "
    "their our them us as than then so such very too can could will would shall should may might must do "
    "does did has have had".split())

# Noun plural -> singular suffix rules, longest first (WordNet's morphy detachment rules for nouns).
_PLURAL_RULES: Tuple[Tuple[str, str], ...] = (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"),
                                              ("xes", "x"), ("zes", "z"), ("men", "man"), ("s", ""))


def lemmatize_noun(word: str) -> str:
    """Rule-based noun lemma (plural -> singular) for the `lemma` mode: "digits" -> "digit", "boxes" -> "box".

    WordNetLemmatizer applies the same detachment rules but keeps only results that are WordNet lemmas;
    without a lexicon, words ending in "ss"/"us"/"is" and words of <= 3 letters are left as they are."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    for suffix, repl in _PLURAL_RULES:
        if word.endswith(suffix):
            return word[: -len(suffix)] + repl
    return word


# --------------------------------------------------------------------------- the lexicon (injected)


@dataclass
class Lexicon:
    """What Eq. 1 needs from a lexicon.

    lemmatize(word) -> noun lemma; synset(lemma) -> the label key of the lemma's own first noun sense,
    or None (mode `wordnet`: key "n<offset>" if wn.synset(f"{lemma}.n.01").name() == f"{lemma}.n.01");
    pos_tag(words) -> [(word, tag)] (used only if nouns_only)."""

    lemmatize: Callable[[str], str]
    synset: Callable[[str], Optional[str]]
    pos_tag: Optional[Callable[[List[str]], List[Tuple[str, str]]]] = None


def check_valid_noun_synset(name: str, word: str) -> bool:
    """The official filter: keep a synset only if it is the word's own first noun sense."""
    return name == f"{word}.n.01"


def wordnet_synset_key(lookup: Callable[[str], object]) -> Callable[[str], Optional[str]]:
    """synset(lemma) from a lookup with nltk's interface: lookup(f"{w}.n.01") -> obj with name()/pos()/offset(),
    raising for unknown words (nltk's WordNetError)."""

    def synset(word: str) -> Optional[str]:
        try:
            s = lookup(f"{word}.n.01")
        except Exception:  # no noun sense: nltk raises WordNetError
            return None
        if not check_valid_noun_synset(s.name(), word):
            return None
        return f"{s.pos()}{s.offset()}"  # the official key: pos + offset, no zero padding

    return synset


def lemma_lexicon(pos_tag=None) -> Lexicon:
    """Mode `lemma`: the rule-based lemma is the label; function words have no label."""
    return Lexicon(lemmatize_noun, lambda w: None if w in STOP_WORDS or w.isdigit() else w, pos_tag)


def nltk_pos_tag():
    """nltk's averaged-perceptron POS tagger (only for nouns_only=True); a clear error if its data is missing."""
    try:
        import nltk

        nltk.data.find("taggers/averaged_perceptron_tagger_eng")
    except (ImportError, LookupError):
        try:
            import nltk

            nltk.data.find("taggers/averaged_perceptron_tagger")
        except (ImportError, LookupError) as e:
            raise RuntimeError(
                "labels.nouns_only=true (papers/catlip/params.yaml) needs nltk with its POS tagger data "
                "(`pip install nltk` and `python -m nltk.downloader averaged_perceptron_tagger_eng`); "
                f"not available here ({type(e).__name__}). Set labels.nouns_only=false (the official behaviour)."
            ) from None
    return nltk.pos_tag


def wordnet_lexicon(pos_tag=None) -> Lexicon:
    """Mode `wordnet` (the paper): nltk's WordNetLemmatizer and WordNet synsets, imported lazily."""
    try:
        import nltk
        from nltk.corpus import wordnet as wn
        from nltk.stem import WordNetLemmatizer

        nltk.data.find("corpora/wordnet")
    except (ImportError, LookupError) as e:
        raise RuntimeError(
            "labels.mode=wordnet (papers/catlip/params.yaml) needs nltk and the WordNet corpus "
            "(`pip install nltk==3.8.1` and `python -m nltk.downloader wordnet`, the official README's pin); "
            f"not available here ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Use labels.mode=lemma, which needs no lexicon data."
        ) from None
    return Lexicon(WordNetLemmatizer().lemmatize, wordnet_synset_key(wn.synset), pos_tag)


def make_lexicon(mode: str, nouns_only: bool = False) -> Lexicon:
    tagger = nltk_pos_tag() if nouns_only else None
    if mode == "lemma":
        return lemma_lexicon(tagger)
    if mode == "wordnet":
        return wordnet_lexicon(tagger)
    raise ValueError(f"labels.mode={mode!r} (papers/catlip/params.yaml): expected 'lemma' or 'wordnet'")


# --------------------------------------------------------------------------- Eq. 1 and the vocabulary


def caption_to_synsets(caption: str, lexicon: Lexicon, nouns_only: bool = False) -> List[str]:
    """Eq. 1: the label keys {f(w_i)} of the caption's words, in caption order, duplicates kept.

    nouns_only=False is the official code: POS tags are not used, any word with a noun sense counts."""
    words = word_tokenize(caption_preprocessing(caption))
    if nouns_only:
        if lexicon.pos_tag is None:
            raise ValueError("nouns_only=True needs a POS tagger in the lexicon")
        words = [w for w, tag in lexicon.pos_tag(words) if tag.startswith("NN")]
    keys = []
    for w in words:
        key = lexicon.synset(lexicon.lemmatize(w))
        if key is not None:
            keys.append(key)
    return keys


def build_vocabulary(label_sets: Iterable[Sequence[str]], v_tau: int) -> Tuple[Dict[str, int], Dict[str, int]]:
    """V: labels occurring in >= v_tau captions (each caption counts a label once), most frequent first,
    ties broken by the key's string order. Returns ({key: index}, {key: count}) for O(1) lookup."""
    if v_tau < 1:
        raise ValueError(f"labels.v_tau={v_tau} (papers/catlip/params.yaml): must be >= 1")
    counts = Counter(k for keys in label_sets for k in set(keys))
    kept = sorted((k for k, c in counts.items() if c >= v_tau), key=lambda k: (-counts[k], k))
    return {k: i for i, k in enumerate(kept)}, {k: counts[k] for k in kept}


def multi_hot(label_sets: Sequence[Sequence[str]], vocab: Dict[str, int]) -> torch.Tensor:
    """Targets [N, |V|] in {0, 1}: 1 where the caption has the label; labels outside V are ignored."""
    y = torch.zeros(len(label_sets), len(vocab))
    for i, keys in enumerate(label_sets):
        idx = [vocab[k] for k in keys if k in vocab]
        if idx:
            y[i, idx] = 1.0
    return y


# --------------------------------------------------------------------------- the loss


def bce_batch_mean(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label BCE-with-logits, reduction `batch_mean` (official BinaryCrossEntropy): summed over the
    batch and the |V| classes, divided by the batch size (hence loss values of ~|labels| scale)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


def catlip_loss(tower, images_u8: torch.Tensor, targets: torch.Tensor, generator=None) -> torch.Tensor:
    """One batch of CatLIP pre-training: the image tower's |V| logits against the multi-hot targets."""
    from common.clip import to_input

    return bce_batch_mean(tower(to_input(images_u8)), targets)
