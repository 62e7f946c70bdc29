"""Captioned scenes: real MNIST digits composed on a 32x32 canvas, with captions of known quality.

A scene holds 1-3 digits, one per quadrant, each with a colour and a size; its caption states them
in reading order, e.g. "two digits: large red seven top left, small blue one bottom right".
Because the generator knows the truth, every pair carries its quality (docs/decisions.md, "Captioned scenes"):

    noise          severity  what the caption gets wrong
    clean          0         nothing
    wrong_colour   1         one object's colour
    wrong_digit    2         one object's digit
    unrelated      3         everything: it is the caption of another, independent scene

Splits (`build_scenes`, all deterministic in `seed`):
- `hq`: a smaller clean set with uniform digit classes (the "high-quality" data of DFN / QQT);
- `pool`: a large mixed set like web data: graded caption noise and a long tail over digit classes
  (class k drawn with weight tail_ratio^(-k/9): digit 0 is the head, digit 9 the tail);
- `probe_train`: clean single-digit scenes for fitting linear probes;
- `test`: clean scenes from held-out MNIST digits (never used in the other splits), for zero-shot
  classification (digit, colour, count), retrieval and the probe's test accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .atomic import write_dir_atomic

CANVAS = 32
QUADRANT = CANVAS // 2
COLOURS: Dict[str, tuple] = {
    "red": (255, 50, 50), "green": (50, 220, 50), "blue": (70, 100, 255),
    "yellow": (240, 230, 40), "magenta": (230, 50, 230), "cyan": (40, 230, 230),
}
SIZES: Dict[str, int] = {"small": 10, "large": 16}  # digit height/width in pixels
POSITIONS: List[str] = ["top left", "top right", "bottom left", "bottom right"]  # quadrants, reading order
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
COUNT_WORDS = {1: "one digit", 2: "two digits", 3: "three digits"}
NOISE_KINDS = ["clean", "wrong_colour", "wrong_digit", "unrelated"]  # index = severity
SPLITS = ["hq", "pool", "probe_train", "test"]


@dataclass(frozen=True)
class Obj:
    digit: int
    colour: str
    size: str
    position: int  # index into POSITIONS


def caption(objs: Sequence[Obj]) -> str:
    """The caption of a scene: count, then each object as `size colour digit position` in reading order."""
    objs = sorted(objs, key=lambda o: o.position)
    parts = [f"{o.size} {o.colour} {DIGIT_WORDS[o.digit]} {POSITIONS[o.position]}" for o in objs]
    return f"{COUNT_WORDS[len(objs)]}: " + ", ".join(parts)


def vocabulary_texts() -> List[str]:
    """Every word a caption or prompt can use: tokenizers built from this do not depend on the data."""
    return [caption([Obj(d, c, s, p)]) for d in range(10) for c in COLOURS for s in SIZES for p in range(4)] + \
        [caption([Obj(0, "red", "small", p) for p in range(k)]) for k in (2, 3)]


def sample_objects(rng: np.random.Generator, digit_probs: np.ndarray, count_probs: Sequence[float]) -> List[Obj]:
    n = int(rng.choice(len(count_probs), p=np.asarray(count_probs) / np.sum(count_probs))) + 1
    positions = np.sort(rng.choice(4, size=n, replace=False))
    colours, sizes = list(COLOURS), list(SIZES)
    return [Obj(int(rng.choice(10, p=digit_probs)), colours[rng.integers(len(colours))],
                sizes[rng.integers(len(sizes))], int(p)) for p in positions]


def corrupt(objs: List[Obj], kind: str, rng: np.random.Generator, digit_probs: np.ndarray,
            count_probs: Sequence[float]) -> List[Obj]:
    """The objects the caption claims, for a noise kind (the image keeps the true objects)."""
    if kind == "clean":
        return objs
    if kind == "unrelated":
        while True:  # an independent scene; redraw in the rare case it describes the same thing
            other = sample_objects(rng, digit_probs, count_probs)
            if caption(other) != caption(objs):
                return other
    i = int(rng.integers(len(objs)))
    o = objs[i]
    if kind == "wrong_colour":
        new = Obj(o.digit, str(rng.choice([c for c in COLOURS if c != o.colour])), o.size, o.position)
    elif kind == "wrong_digit":
        new = Obj(int(rng.choice([d for d in range(10) if d != o.digit])), o.colour, o.size, o.position)
    else:
        raise KeyError(f"unknown noise kind '{kind}'; known: {NOISE_KINDS}")
    return objs[:i] + [new] + objs[i + 1:]


class DigitBank:
    """MNIST digits by class, pre-resized to every object size (uint8 [N, s, s])."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(images.reshape(len(images), 1, *images.shape[-2:])).float()
        self.resized = {
            name: F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            .round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
            for name, s in SIZES.items()
        }
        self.by_class = [np.flatnonzero(labels == d) for d in range(10)]

    def render(self, objs: Sequence[Obj], rng: np.random.Generator) -> np.ndarray:
        """A [3, 32, 32] uint8 canvas: each digit tinted with its colour, jittered inside its quadrant."""
        canvas = np.zeros((CANVAS, CANVAS, 3), dtype=np.float32)
        for o in objs:
            s = SIZES[o.size]
            glyph = self.resized[o.size][rng.choice(self.by_class[o.digit])].astype(np.float32) / 255.0
            r0 = (o.position // 2) * QUADRANT + int(rng.integers(QUADRANT - s + 1))
            c0 = (o.position % 2) * QUADRANT + int(rng.integers(QUADRANT - s + 1))
            tint = glyph[..., None] * np.asarray(COLOURS[o.colour], dtype=np.float32)
            canvas[r0:r0 + s, c0:c0 + s] = np.maximum(canvas[r0:r0 + s, c0:c0 + s], tint)
        return np.round(canvas).astype(np.uint8).transpose(2, 0, 1)


def long_tail_probs(tail_ratio: float) -> np.ndarray:
    """p(digit k) proportional to tail_ratio^(-k/9): digit 0 is tail_ratio times as frequent as digit 9."""
    w = float(tail_ratio) ** (-np.arange(10) / 9.0)
    return w / w.sum()


def make_split(bank: DigitBank, n: int, seed: int, noise: Dict[str, float], digit_probs: np.ndarray,
               count_probs: Sequence[float]) -> Dict[str, list]:
    """n scenes with their (possibly corrupted) captions and the ground truth of each pair.

    The noise kinds are assigned as exact shares of n (rounded, remainder to `clean`), shuffled.
    """
    rng = np.random.default_rng(seed)
    kinds = []
    for k in NOISE_KINDS[1:]:
        kinds += [k] * int(round(noise.get(k, 0.0) * n))
    if len(kinds) > n:
        raise ValueError(f"noise shares {noise} sum to more than 1")
    kinds = np.array(["clean"] * (n - len(kinds)) + kinds)[rng.permutation(n)]
    cols = {key: [] for key in ["image", "caption", "true_caption", "noise", "severity", "count", "digits",
                                "colours", "sizes", "positions"]}
    for kind in kinds:
        objs = sample_objects(rng, digit_probs, count_probs)
        objs = sorted(objs, key=lambda o: o.position)
        cols["image"].append(bank.render(objs, rng))
        cols["true_caption"].append(caption(objs))
        cols["caption"].append(caption(corrupt(objs, str(kind), rng, digit_probs, count_probs)))
        cols["noise"].append(str(kind))
        cols["severity"].append(NOISE_KINDS.index(kind))
        cols["count"].append(len(objs))
        cols["digits"].append([o.digit for o in objs])
        cols["colours"].append([o.colour for o in objs])
        cols["sizes"].append([o.size for o in objs])
        cols["positions"].append([o.position for o in objs])
    return cols


def build_scenes(images: np.ndarray, labels: np.ndarray, cfg, out_dir: Optional[Path] = None):
    """All splits from raw MNIST (uint8 [N, 28, 28] or [N, 1, H, W]) and a `ScenesConfig`.

    Digits are split once (stratified, seeded: `common.data.split_indices`) into those drawn for
    hq/pool/probe_train and the held-out ones drawn for test. Written with `save_to_disk` if `out_dir`.
    """
    import datasets

    from common.data import split_indices

    tr, ho = split_indices(labels, cfg.heldout_digits, cfg.seed)
    train_bank, test_bank = DigitBank(images[tr], labels[tr]), DigitBank(images[ho], labels[ho])
    uniform = np.full(10, 0.1)
    specs = {
        "hq": (train_bank, cfg.n_hq, {}, uniform, cfg.count_probs),
        "pool": (train_bank, cfg.n_pool, dict(cfg.pool_noise), long_tail_probs(cfg.tail_ratio), cfg.count_probs),
        "probe_train": (train_bank, cfg.n_probe_train, {}, uniform, [1.0]),
        "test": (test_bank, cfg.n_test, {}, uniform, cfg.test_count_probs),
    }
    features = datasets.Features({
        "image": datasets.Array3D(shape=(3, CANVAS, CANVAS), dtype="uint8"),
        "caption": datasets.Value("string"), "true_caption": datasets.Value("string"),
        "noise": datasets.Value("string"), "severity": datasets.Value("int64"), "count": datasets.Value("int64"),
        "digits": datasets.Sequence(datasets.Value("int64")), "colours": datasets.Sequence(datasets.Value("string")),
        "sizes": datasets.Sequence(datasets.Value("string")), "positions": datasets.Sequence(datasets.Value("int64")),
    })
    dd = datasets.DatasetDict({
        name: datasets.Dataset.from_dict(
            make_split(bank, n, cfg.seed * 1000 + SPLITS.index(name), noise, probs, counts), features=features)
        for name, (bank, n, noise, probs, counts) in specs.items()
    })
    if out_dir is not None:
        write_dir_atomic(out_dir, dd.save_to_disk)
    return dd


@dataclass
class Scenes:
    """One split in memory: images uint8 [N, 3, 32, 32] (torch) and the per-pair columns (lists / numpy)."""

    images: torch.Tensor  # noqa: F821
    captions: List[str]
    true_captions: List[str]
    noise: np.ndarray
    severity: np.ndarray
    count: np.ndarray
    digits: List[List[int]]
    colours: List[List[str]]

    def __len__(self):
        return len(self.captions)

    def subset(self, idx) -> Scenes:
        idx = np.asarray(idx, dtype=np.int64)
        return Scenes(self.images[idx], [self.captions[i] for i in idx], [self.true_captions[i] for i in idx],
                      self.noise[idx], self.severity[idx], self.count[idx], [self.digits[i] for i in idx],
                      [self.colours[i] for i in idx])

    def with_captions(self, captions: Sequence[str]) -> Scenes:
        if len(captions) != len(self):
            raise ValueError(f"{len(captions)} captions for {len(self)} scenes")
        return Scenes(self.images, list(captions), self.true_captions, self.noise, self.severity, self.count,
                      self.digits, self.colours)

    @property
    def clean(self) -> np.ndarray:
        return self.severity == 0


def load_scenes(data_dir: Path, split: str) -> Scenes:
    """Read one split written by the root stage `build_scenes`."""
    import torch

    from common.config import load_from_disk, reading
    from common.data import MissingDataError

    data_dir = Path(data_dir)
    ds = load_from_disk(data_dir, "build_scenes", error=MissingDataError)[split]
    with reading(data_dir / split, "build_scenes"):
        x = ds.with_format("numpy", columns=["image"], dtype=np.uint8)[:]["image"]
        cols = ds.remove_columns(["image"]).to_dict()
    return Scenes(torch.from_numpy(np.ascontiguousarray(x)), cols["caption"], cols["true_caption"],
                  np.asarray(cols["noise"]), np.asarray(cols["severity"]), np.asarray(cols["count"]),
                  cols["digits"], cols["colours"])


# --------------------------------------------------------------------------- full profile: web image-text shards
SCORE_FIELDS = ("score", "clip_l14_similarity_score")  # a pair's quality score in its .json, first found wins


def _shard_pairs(path, limit: Optional[int] = None):
    """(shard, open tar, key, {".ext": member}) of each pair with an image and a caption in the webdataset shards
    `<path>/*.tar`, in shard and key order (at most `limit`). No shards there: a one-line MissingDataError."""
    import tarfile

    from common.config import reading
    from common.data import IMAGE_SUFFIXES, MissingDataError

    path = Path(path)
    shards = sorted(path.glob("*.tar")) if path.is_dir() else []
    if not shards:
        raise MissingDataError(f"no webdataset shards (*.tar) at {path}: download them there (DataComp's "
                               f"download_upstream.py or img2dataset) or point the paper's params.yaml at them "
                               f"(docs/full_profile.md)")
    n = 0
    for shard in shards:
        with reading(shard, hint="image-text shards set in the paper's params.yaml"), tarfile.open(shard) as tar:
            members: Dict[str, Dict[str, tarfile.TarInfo]] = {}
            for m in tar.getmembers():
                if m.isfile():
                    key, _, ext = m.name.rpartition(".")
                    members.setdefault(key, {})["." + ext.lower()] = m
            for key in sorted(members):
                files = members[key]
                if ".txt" not in files or not any(s in files for s in IMAGE_SUFFIXES):
                    continue
                yield shard, tar, key, files
                n += 1
                if limit and n >= limit:
                    return


def load_image_text_shards(path, resolution: int = 224, limit: Optional[int] = None) -> Scenes:
    """Image-text pairs from webdataset shards (`<path>/*.tar`: `<key>.jpg|png|webp` + `<key>.txt` [+ `<key>.json`]),
    the format of DataComp (`download_upstream.py` output), CC3M / CC12M (img2dataset) and LAION. Images are
    centre-cropped and resized to `resolution`. Web pairs carry no ground truth: noise "unknown", severity -1.
    A missing folder or one without shards is a MissingDataError naming the params key to set."""
    import torch
    from PIL import Image

    from common.data import IMAGE_SUFFIXES, center_crop_resize

    images, captions = [], []
    for _, tar, _, files in _shard_pairs(path, limit):
        img = next(files[s] for s in IMAGE_SUFFIXES if s in files)
        with Image.open(tar.extractfile(img)) as im:
            images.append(center_crop_resize(im, resolution))
        captions.append(tar.extractfile(files[".txt"]).read().decode("utf-8").strip())
    n = len(captions)
    return Scenes(torch.from_numpy(np.stack(images)), captions, list(captions), np.array(["unknown"] * n),
                  np.full(n, -1), np.zeros(n, dtype=np.int64), [[] for _ in range(n)], [[] for _ in range(n)])


def load_shard_scores(path, limit: Optional[int] = None) -> np.ndarray:
    """Each pair's quality score from its `<key>.json` (the first of SCORE_FIELDS present: a score the user wrote,
    e.g. T-MARS's, else DataComp's `clip_l14_similarity_score`), in load_image_text_shards' order. A pair
    without one is a one-line MissingDataError."""
    import json

    from common.data import MissingDataError

    scores = []
    for shard, tar, key, files in _shard_pairs(path, limit):
        meta = json.loads(tar.extractfile(files[".json"]).read()) if ".json" in files else {}
        field = next((f for f in SCORE_FIELDS if meta.get(f) is not None), None)
        if field is None:
            raise MissingDataError(f"{shard}: pair {key} has no {' / '.join(SCORE_FIELDS)} in {key}.json; write each "
                                   f"pair's filter score there (docs/full_profile.md)")
        scores.append(float(meta[field]))
    return np.asarray(scores, dtype=np.float64)


def load_full_pool(cfg, paper: str, key: str, needs: str, scored: bool = False):
    """The web image-text pairs a paper's full profile reads from the shards at params key `key`, at the pipelines'
    CANVAS resolution, with their .json scores when `scored`: (Scenes, scores or None). None when the key is null
    (the cpu / tiny profiles: the offline scenes); a missing path is check_full_data's one-line error."""
    from common.data import check_full_data

    path = check_full_data(cfg, paper, (key,), needs)[key]
    if path is None:
        return None
    return load_image_text_shards(path, CANVAS), (load_shard_scores(path) if scored else None)
