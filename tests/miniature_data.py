"""Miniatures of the real data formats the full profiles read (a handful of random images each).

The full profile of each paper reads a dataset the user supplies (docs/full_profile.md); these writers
produce the same on-disk format at a few examples, so `tests/test_full_profile.py` runs the real loaders:
- `cifar10_datasets`: CIFAR-10 as `datasets.save_to_disk` writes it (the hub's uoft-cs/cifar10: `img`, `label`);
- `imagenet_folder`: class-conditional ImageNet, `train/<wnid>/<wnid>_<n>.JPEG` (varied sizes);
- `webdataset_shard`: one DataComp / CC3M-style shard, `<key>.jpg` + `<key>.txt` + `<key>.json` in a tar (the
  .json with DataComp's `clip_l14_similarity_score`, which the scored full profiles rank by);
- `scene_splits`: the shared captioned scenes (root stage build_scenes) at 4 scenes per split, the evaluation
  splits every CLIP paper's full profile still reads;
- `entity_questions`: EntityQuestions' `dataset/` folder, `{train,dev,test}/<relation>.<split>.json`;
- `feature_matrix`: an [N, D] float32 .npy of image embeddings (DINOv2 ViT-L/14 features: D = 1024).
"""

import io
import json
import tarfile
from pathlib import Path

import numpy as np


def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def cifar10_datasets(dest: Path, per_class: int = 2, seed: int = 0) -> Path:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=names)})

    def split(n_per_class):
        labels = [k for k in range(10) for _ in range(n_per_class)]
        imgs = [Image.fromarray(a) for a in _images(rng, len(labels), 32, 32)]
        return datasets.Dataset.from_dict({"img": imgs, "label": labels}, features=features)

    datasets.DatasetDict({"train": split(per_class), "test": split(1)}).save_to_disk(str(dest))
    return Path(dest)


def imagenet_folder(dest: Path, classes=("n01440764", "n01443537"), per_class: int = 2, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for wnid in classes:
        (Path(dest) / "train" / wnid).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(40, 80)), int(rng.integers(40, 80))  # ImageNet images differ in size
            Image.fromarray(_images(rng, 1, h, w)[0]).save(Path(dest) / "train" / wnid / f"{wnid}_{i}.JPEG")
    return Path(dest)


def _add(tar: tarfile.TarFile, name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def webdataset_shard(dest: Path, n: int = 4, seed: int = 0, size: int = 48) -> Path:
    """`dest/00000000.tar` with n pairs keyed 000000000, 000000001, ... (DataComp's shard layout)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    captions = ["a photo of a dog on the grass", "two red cars parked by a house", "a bowl of fruit on a table",
                "a man riding a bicycle in the city"]
    Path(dest).mkdir(parents=True, exist_ok=True)
    with tarfile.open(Path(dest) / "00000000.tar", "w") as tar:
        for i, a in enumerate(_images(rng, n, size, size)):
            key = f"{i:09d}"
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="JPEG")
            _add(tar, f"{key}.jpg", buf.getvalue())
            _add(tar, f"{key}.txt", captions[i % len(captions)].encode())
            meta = {"uid": f"{i:032x}", "caption": captions[i % len(captions)],
                    "clip_l14_similarity_score": float(rng.uniform(0.1, 0.4))}
            _add(tar, f"{key}.json", json.dumps(meta).encode())
    return Path(dest)


def scene_splits(dest: Path, n: int = 4, seed: int = 0) -> Path:
    """`dest` as build_scenes writes it (hq, pool, probe_train, test), from random 28x28 "digits" 0-9."""
    from common.config import ScenesConfig
    from common.scenes import build_scenes

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), 4)
    cfg = ScenesConfig(source="mnist", heldout_digits=10, n_hq=n, n_pool=n, n_probe_train=n, n_test=n, tail_ratio=30.0,
                       count_probs=[1.0, 1.0, 1.0], test_count_probs=[2.0, 1.0, 1.0], seed=0,
                       pool_noise={"wrong_colour": 0.15, "wrong_digit": 0.15, "unrelated": 0.3})
    build_scenes(rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8), labels, cfg, Path(dest))
    return Path(dest)


def entity_questions(dest: Path) -> Path:
    rows = {"P17": [("Which country is Paris located in?", ["France"]), ("Which country is Lyon located in?", ["France"]),
                    ("Which country is Rome located in?", ["Italy"])],
            "P36": [("What is the capital of Peru?", ["Lima"]), ("What is the capital of Chile?", ["Santiago"]),
                    ("What is the capital of Spain?", ["Madrid", "Madrid city"])]}
    for split in ("train", "dev", "test"):
        (Path(dest) / split).mkdir(parents=True, exist_ok=True)
        for rel, qa in rows.items():
            data = [{"question": q, "answers": a} for q, a in qa]
            (Path(dest) / split / f"{rel}.{split}.json").write_text(json.dumps(data))
    return Path(dest)


def feature_matrix(dest: Path, n: int = 64, dim: int = 1024, seed: int = 0) -> Path:
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    np.save(dest, np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32))
    return Path(dest)
