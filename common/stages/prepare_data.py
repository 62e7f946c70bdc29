"""Root stage `prepare_data`: the dataset named by `data.*`, resized, split and saved with `datasets`."""

import json
import sys

from common.config import RootConfig, load_config, resolve
from common.data import prepare


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.data, "prepared")
    out.parent.mkdir(parents=True, exist_ok=True)
    dd = prepare(cfg.data.name, cfg.data.resolution, cfg.data.num_heldout, cfg.seed, out, cfg.data.source)
    summary = {split: len(ds) for split, ds in dd.items()}
    print(json.dumps({"dataset": cfg.data.name, "resolution": cfg.data.resolution, **summary}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
