"""Root stage `prepare_patches`: real RGB image patches and LFW faces (common/image_patches.py) for the
autoencoder and super-resolution papers.

Writes data/patches (a `datasets.DatasetDict`: `train` / `heldout` crops of the `skimage.data` photographs,
split by region of each photo, and `faces`; columns image uint8 [C, H, W], source, split, top, left) and a
summary (rows per split and photo, wall time) to metrics/patches.json. Reader: common.image_patches.load_patches.
"""

import json
import sys
import time
from collections import Counter

from common.atomic import write_dir_atomic
from common.config import RootConfig, load_config, resolve, to_dict
from common.image_patches import PHOTOS, build_patches, patches_dir


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    dd = build_patches(cfg.patches)
    out = patches_dir(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_dir_atomic(out, dd.save_to_disk)
    summary = {"rows": {k: len(v) for k, v in dd.items()},
               "shape": {k: list(v.features["image"].shape) for k, v in dd.items()},
               "per_source": {k: dict(Counter(v["source"])) for k, v in dd.items()},
               "photos": list(PHOTOS), "patches": to_dict(cfg.patches), "seconds": time.time() - t0}
    path = resolve(cfg, "metrics", "patches.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("rows", "shape", "seconds")}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
