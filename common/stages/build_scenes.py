"""Root stage `build_scenes`: the captioned-scenes dataset (common/scenes.py) from real MNIST digits.

Writes data/scenes (a `datasets.DatasetDict` with splits hq / pool / probe_train / test, via
`save_to_disk`), a grid of pool scenes with their captions, and a summary (noise shares, digit
classes of the pool's long tail) in metrics/scenes.json.
"""

import json
import sys
from collections import Counter

import numpy as np

from common.config import RootConfig, load_config, resolve
from common.data import SOURCES
from common.scenes import NOISE_KINDS, build_scenes


def save_grid(ds, path, n: int = 12):
    """Pool scenes with caption and ground truth: what 'graded caption noise' looks like."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, n // 3, figsize=(4 * n // 3, 9.5))
    rows = ds.with_format("numpy", dtype=np.uint8)[:n]
    caps, noise = ds[:n]["caption"], ds[:n]["noise"]
    for i, ax in enumerate(axes.flat):
        ax.imshow(np.asarray(rows["image"][i], dtype=np.uint8).transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(caps[i].replace(", ", ",\n").replace(": ", ":\n") + f"\n[{noise[i]}]", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    s = cfg.scenes
    if s.source not in SOURCES:
        raise KeyError(f"params.yaml: scenes.source={s.source!r} is not a known dataset: {sorted(SOURCES)}")
    x, y = SOURCES[s.source](None)
    out = resolve(cfg, cfg.paths.data, "scenes")
    dd = build_scenes(x[:, 0] if x.ndim == 4 else x, y, s, out)
    pool = dd["pool"]
    digits = Counter(d for ds in pool["digits"] for d in ds)
    summary = {
        "rows": {k: len(v) for k, v in dd.items()},
        "pool_noise_share": {k: float(np.mean(np.asarray(pool["noise"]) == k)) for k in NOISE_KINDS},
        "pool_digit_share": {str(d): digits[d] / sum(digits.values()) for d in range(10)},
        "pool_head_tail_ratio": digits[0] / max(1, digits[9]),
    }
    fig_dir = resolve(cfg, cfg.paths.reports, "scenes")
    fig_dir.mkdir(parents=True, exist_ok=True)
    save_grid(pool, fig_dir / "pool_examples.png")
    path = resolve(cfg, "metrics", "scenes.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
