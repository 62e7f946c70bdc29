"""Stage `train`: the same network trained with the plain loss (gamma = 0) and with DDPM-IP's
input perturbation (gamma), once per training seed, with identical budget, data order and seeds.

Each run resumes from runs/ddpm_ip/<arm>-seed<s>/checkpoints after an interruption and saves its
EMA weights to models/ddpm_ip/<arm>-seed<s>. Writes reports/ddpm_ip/train.json (time, losses).
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from common.config import load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.diffusion_training import train_diffusion_model
from common.tracking import log_run
from papers.ddpm_ip import method
from papers.ddpm_ip.config import DdpmIpConfig

PAPER = "ddpm_ip"
HERE = Path(__file__).parent


def arms(cfg):
    """(arm name, gamma): `baseline` is the plain DDPM loss, `method` the input-perturbed one."""
    return [("baseline", 0.0), ("method", cfg.gamma)]


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def main(argv=None):
    cfg = load_config(DdpmIpConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    runs = []
    t0 = time.time()
    for seed in cfg.train_seeds:
        for arm, gamma in arms(cfg):
            model_cfg = replace(cfg.model, train=replace(cfg.model.train, seed=seed))
            name = run_name(arm, seed)
            ip = {"input_perturbation": gamma} if gamma else None  # the run identity (gamma = 0: the plain recipe)
            run = train_diffusion_model(model_cfg, cfg.data, x, y, resolve(cfg, cfg.paths.runs, PAPER, name),
                                        resolve(cfg, cfg.paths.models, PAPER, name),
                                        noise_input=method.input_perturbation(gamma), desc=f"{PAPER} {name}",
                                        code_files=[Path(__file__), Path(method.__file__)],
                                        extra_identity=ip, extra_meta=ip)
            h = run.result.history
            runs.append({"arm": arm, "gamma": gamma, "train_seed": seed, "seconds": run.seconds,
                         "steps": run.result.steps, "resumed_from": run.result.resumed_from or 0,
                         "params": run.meta["params"], "final_loss": h[-1]["loss"], "history": h})
            log_run(cfg, PAPER, "train", {"arm": arm, "gamma": gamma, "model": to_dict(cfg.model)},
                    {k: v for k, v in runs[-1].items() if isinstance(v, (int, float))}, seed=seed, history=h)
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "history"}), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps({"runs": runs, "train_seconds": time.time() - t0}, indent=2))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
