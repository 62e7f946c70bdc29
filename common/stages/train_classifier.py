"""Root stage `train_classifier`: the metric backbone (a small CNN) replacing Inception offline.

Its held-out accuracy goes into the metrics JSON and the base-model report: a feature space is
only as meaningful as the classifier is good.
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import common.models
import common.training
from common.config import RootConfig, budget_config, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.evaluation import backbone_name, save_classifier
from common.models import Classifier, count_parameters
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (edge-padded): cheap augmentation."""
    n, _, h, w = x.shape
    pad = F.pad(x, [max_shift] * 4, mode="replicate")
    dx, dy = (torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator))
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    c = cfg.classifier
    seed_everything(c.seed)
    data_dir = resolve(cfg, cfg.paths.data, "prepared")
    x, y = load_split(data_dir, "train")
    xh, yh = load_split(data_dir, "heldout")
    model = Classifier(x.shape[1], c.channels, c.feature_dim, int(y.max()) + 1)
    tcfg = budget_config(c.steps, warmup_steps=50, batch_size=c.batch_size, lr=c.lr, lr_schedule="cosine",
                         seed=c.seed, checkpoint_every=c.steps, keep_checkpoints=1, grad_clip=1.0,
                         log_every=max(1, c.steps // 20))

    def loss_fn(m, xb, yb, gen):
        return F.cross_entropy(m(random_shift(to_model_range(xb), gen)), yb)

    run_id = fingerprint({"classifier": to_dict(cfg)["classifier"], "data": to_dict(cfg)["data"]},
                         [Path(__file__), Path(common.training.__file__), Path(common.models.__file__)])
    res = train(model, loss_fn, (x, y), tcfg, resolve(cfg, cfg.paths.runs, "classifier", "checkpoints"),
                desc="classifier", use_ema=False, run_fingerprint=run_id)
    if not res.is_main_process:
        return
    model = res.model.eval()
    with torch.no_grad():
        acc = float((model(to_model_range(xh)).argmax(1) == yh).float().mean())
    name = backbone_name(cfg.data.name)
    meta = {"in_channels": x.shape[1], "channels": list(c.channels), "feature_dim": c.feature_dim,
            "num_classes": int(y.max()) + 1, "backbone": name, "heldout_accuracy": acc}
    save_classifier(model, resolve(cfg, cfg.paths.models, "classifier"), meta)
    metrics = {"heldout_accuracy": acc, "params": count_parameters(model), "train_seconds": res.train_seconds,
               "resumed_from_step": res.resumed_from_step}
    path = resolve(cfg, "metrics", "classifier.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    log_run(cfg, "shared", "train_classifier", {"classifier": to_dict(cfg)["classifier"], "data": to_dict(cfg)["data"]},
            metrics, seed=c.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
