"""Sample-quality metrics through torch-fidelity with an in-repo feature extractor, and intervals.

Inception weights are a download, so (docs/decisions.md) the backbone is a classifier trained by the
root stage `train_classifier` on the same data. It is registered with torch-fidelity's
`register_feature_extractor`; FID, KID and precision/recall are torch-fidelity's own functions
applied to its features. Metric names carry the backbone: `fid[mnist-classifier]`.

Features are extracted once per image set; metrics and bootstrap intervals are computed from
the features, so resampling never re-runs a network. Extraction runs on a device (`device=`; a
`SampleScorer`'s is `common.devices.default_device()`, a GPU when available) and the features come
back on the CPU; the metrics are computed there.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from .devices import DeviceLike, default_device
from .models import Classifier

FEATURES = ("features", "logits")


def backbone_name(dataset: str) -> str:
    return f"{dataset}-classifier"


def metric_key(metric: str, backbone: str) -> str:
    """`fid[mnist-classifier]`: a metric name always says which feature space it lives in."""
    return f"{metric}[{backbone}]"


def load_classifier(weights_dir: Path) -> Classifier:
    """The metric backbone written by the root stage `train_classifier`; missing or unreadable: a UserError naming it."""
    from safetensors.torch import load_file

    from .config import reading, require

    weights_dir = require(weights_dir, "train_classifier", marker="config.json")
    with reading(weights_dir / "config.json", "train_classifier"):
        cfg = json.loads((weights_dir / "config.json").read_text())
        model = Classifier(cfg["in_channels"], cfg["channels"], cfg["feature_dim"], cfg["num_classes"])
    with reading(weights_dir / "model.safetensors", "train_classifier"):
        model.load_state_dict(load_file(str(weights_dir / "model.safetensors")))
    return model.eval().requires_grad_(False)


def save_classifier(model: Classifier, weights_dir: Path, meta: dict):
    from safetensors.torch import save_file

    from .atomic import atomic_dir

    with atomic_dir(weights_dir) as tmp:
        save_file(model.state_dict(), str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity extractor: uint8 [N, C, H, W] -> (penultimate features, logits)."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"feature extractor '{name}' needs feature_extractor_weights_path")
        self.net = load_classifier(Path(feature_extractor_weights_path))

    @staticmethod
    def get_provided_features_list():
        return FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "features"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        x = x.float() / 127.5 - 1.0
        f = self.net.features(x)
        out = {"features": f, "logits": self.net.head(f)}
        # torch-fidelity expects exactly the requested features, in order (calculate_metrics asks for one)
        return tuple(out[k] for k in self.features_list)


def ensure_registered(name: str):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, ClassifierFeatureExtractor)


class _Images(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def _fidelity_cuda(device: DeviceLike) -> bool:
    """torch-fidelity's `cuda` flag for `device` (None: the CPU): it knows only the CPU and the current CUDA device."""
    device = torch.device("cpu" if device is None else device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"feature extraction runs on the CPU or a CUDA device, not {device}")
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # torch-fidelity moves the network and the batches with `.cuda()`
    return device.type == "cuda"


@lru_cache(maxsize=4)
def _extractor(name: str, weights_dir: str, cuda: bool = False):
    from torch_fidelity.utils import create_feature_extractor

    ensure_registered(name)
    return create_feature_extractor(name, list(FEATURES), cuda=cuda, feature_extractor_weights_path=weights_dir,
                                    verbose=False)


def extract_features(images_uint8: torch.Tensor, backbone: str, weights_dir: Path,
                     device: DeviceLike = None) -> Dict[str, torch.Tensor]:
    """torch-fidelity's dataset pass with our registered extractor: {'features': [N, D], 'logits': [N, K]},
    on the CPU; the network runs on `device` (default: the CPU)."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    cuda = _fidelity_cuda(device)
    ext = _extractor(backbone, str(Path(weights_dir).resolve()), cuda)
    return get_featuresdict_from_dataset(_Images(images_uint8.cpu()), ext, batch_size=500, cuda=cuda,
                                         save_cpu_ram=True, verbose=False)


def fid_from_features(f_gen: torch.Tensor, f_ref: torch.Tensor) -> float:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    s1 = fid_features_to_statistics(f_gen.double())
    s2 = fid_features_to_statistics(f_ref.double())
    return fid_statistics_to_metric(s1, s2, verbose=False)["frechet_inception_distance"]


def metrics_from_features(f_gen: torch.Tensor, f_ref: torch.Tensor, kid_subset_size: int = 1000,
                          prc_k: int = 3) -> Dict[str, float]:
    """FID, KID (mean), precision and recall (k-NN manifolds, k=3) with torch-fidelity's functions."""
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    kid = kid_features_to_metric(f_gen, f_ref, kid_subset_size=min(kid_subset_size, len(f_gen), len(f_ref)),
                                 kid_subsets=100, rng_seed=2020, verbose=False)
    prc = prc_features_to_metric(f_gen, f_ref, prc_neighborhood=prc_k, prc_batch_size=10000, save_cpu_ram=True,
                                 verbose=False)
    return {
        "fid": fid_from_features(f_gen, f_ref),
        "kid": kid["kernel_inception_distance_mean"],
        "precision": prc["precision"],
        "recall": prc["recall"],
    }


def classifier_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """How often the metric backbone reads the intended class: a conditional-consistency score."""
    return float((logits.argmax(1) == labels).float().mean())


def bootstrap_ci(statistic: Callable[..., float], arrays: Sequence[torch.Tensor], n_boot: int = 200,
                 alpha: float = 0.05, seed: int = 0, bias_correct: bool = False) -> Tuple[float, float]:
    """Percentile bootstrap interval of statistic(*arrays), resampling each array's rows independently.

    `bias_correct=True` shifts the interval by the bootstrap bias (mean of replicates - estimate). FID
    needs it: resampling with replacement duplicates rows, which inflates every replicate, so the
    plain percentile interval of a good model's FID can lie entirely above the estimate.
    """
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        res = [a[torch.from_numpy(rng.integers(0, len(a), len(a)))] for a in arrays]
        vals.append(statistic(*res))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    if bias_correct:
        bias = float(np.mean(vals)) - statistic(*arrays)
        lo, hi = lo - bias, hi - bias
    return float(lo), float(hi)


def reference_features(data_dir: Path, split: str, backbone: str, weights_dir: Path,
                       device: DeviceLike = None) -> Dict[str, torch.Tensor]:
    from .data import load_split

    x, y = load_split(data_dir, split)
    feats = extract_features(x, backbone, weights_dir, device)
    feats["labels"] = y
    return feats


def score_samples(images_uint8: torch.Tensor, labels: Optional[torch.Tensor], ref: Dict[str, torch.Tensor],
                  backbone: str, weights_dir: Path, device: DeviceLike = None) -> Dict[str, float]:
    """All metrics of a sample set against reference features, keyed with the backbone name."""
    f = extract_features(images_uint8, backbone, weights_dir, device)
    m = metrics_from_features(f["features"], ref["features"])
    if labels is not None:
        m["class_acc"] = classifier_accuracy(f["logits"], labels.cpu())
    return {metric_key(k, backbone): v for k, v in m.items()}


class SampleScorer:
    """Scores sample sets against a prepared split in the metric backbone's feature space.

    Reference features are extracted once; `score` returns metric keys that name the backbone.
    The backbone runs on `device` (default `common.devices.default_device()`: a GPU when available).
    """

    def __init__(self, data_dir: Path, weights_dir: Path, dataset: str, split: str = "heldout",
                 device: DeviceLike = None):
        self.backbone = backbone_name(dataset)
        self.weights_dir = Path(weights_dir)
        self.device = default_device() if device is None else torch.device(device)
        load_classifier(self.weights_dir)  # fail early, with the stage that makes it
        self.ref = reference_features(data_dir, split, self.backbone, self.weights_dir, self.device)
        self.num_reference = len(self.ref["features"])

    def key(self, metric: str) -> str:
        return metric_key(metric, self.backbone)

    def score(self, images_uint8: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Dict[str, float]:
        return score_samples(images_uint8, labels, self.ref, self.backbone, self.weights_dir, self.device)

    def fid_ci(self, images_uint8: torch.Tensor, n_boot: int = 200, seed: int = 0) -> Tuple[float, float]:
        """Bias-corrected bootstrap interval of FID over both the samples and the reference set."""
        f = extract_features(images_uint8, self.backbone, self.weights_dir, self.device)["features"]
        return bootstrap_ci(fid_from_features, [f, self.ref["features"]], n_boot=n_boot, seed=seed, bias_correct=True)
