"""Stage `benchmark`: the encoders' size and speed, LiteVAE vs the VAE (AutoencoderKL) encoder, in one run.

  encoder_params   parameters of the encoder the paper counts (VAE: Encoder + quant_conv; LiteVAE: DWT + F_l +
                   F_agg, the DWT has none)
  encoder_gflops   forward FLOPs per image (torch.utils.flop_counter.FlopCounterMode, one batch / batch size)
  seconds          median of `repeats` timed forward calls on one batch of held-out patches (no grad), per round;
                   `images_per_second` = batch / seconds
Rounds alternate the order of the two encoders (VAE first in even rounds); a round is one unit of the speed claim
(machine load that drifts during the run hits both encoders of a round alike). The weights are those of the first
training seed (speed does not depend on them). Rows: `encoder_cost` with arm = baseline (vae) / method (litevae).
Writes reports/litevae/benchmark.json.
"""

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.data import to_model_range
from common.devices import default_device
from common.eval_stage import EvalStage
from common.image_patches import load_patches
from common.models import count_parameters
from papers.litevae.config import LiteVAEConfig
from papers.litevae.train import PAPER, encoder_of, load_model

CONTENDERS = {"baseline": "vae", "method": "litevae"}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def gflops_per_image(enc, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        enc(x)
    return counter.get_total_flops() / x.shape[0] / 1e9


@torch.no_grad()
def median_seconds(enc, x: torch.Tensor, repeats: int, warmup: int, device) -> float:
    for _ in range(warmup):
        enc(x)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        enc(x)
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    stage = EvalStage.load(LiteVAEConfig, PAPER, argv)
    cfg, bm, device = stage.cfg, stage.cfg.benchmark, default_device()
    x = to_model_range(load_patches(cfg, "heldout").images[:bm.batch_size]).to(device)
    seed = cfg.train_seeds[0]
    enc = {role: encoder_of(load_model(cfg, arm, seed)).to(device) for role, arm in CONTENDERS.items()}
    size = {role: {"encoder_params": count_parameters(e), "encoder_gflops": gflops_per_image(e, x)}
            for role, e in enc.items()}
    roles = list(CONTENDERS)
    for r in range(bm.rounds):
        for role in (roles if r % 2 == 0 else roles[::-1]):
            s = median_seconds(enc[role], x, bm.repeats, bm.warmup if r == 0 else 0, device)
            stage.add(comparison="encoder_cost", arm=role, model=CONTENDERS[role], round=r, seconds=s,
                      images_per_second=bm.batch_size / s, **size[role])
    med = {role: statistics.median(row["seconds"] for row in stage.rows if row["arm"] == role) for role in roles}
    stage.write("benchmark.json", device=str(device), threads=torch.get_num_threads(), batch_size=bm.batch_size,
                median_seconds=med, speedup=med["baseline"] / med["method"],
                param_ratio=size["baseline"]["encoder_params"] / size["method"]["encoder_params"],
                flop_ratio=size["baseline"]["encoder_gflops"] / size["method"]["encoder_gflops"], sizes=size)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
