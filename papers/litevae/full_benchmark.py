"""The full profile's encoders on a GPU: LiteVAE-B vs the SD-VAE encoder at 256x256, randomly initialised.

Not a DVC stage (it needs a GPU; the cpu pipeline's `benchmark` stage times the trained toy encoders). Run
`python -m papers.litevae.full_benchmark profile=full`; writes reports/litevae/full_benchmark.json.
Per encoder (benchmark.batch_size images of 256x256): parameters, forward GFLOPs per image (FlopCounterMode),
the time of a forward call (no grad) in fp32 and in bf16 autocast, in interleaved rounds (the order alternates;
a round is one unit), and the peak memory of a forward + backward. Per arm: one training step of Eq. (5)
(AdamW, bf16 autocast, batch train.batch_size; a random stand-in LPIPS trunk: the official LPIPS weights are not
here), its time and peak memory: the paper's "faster training, lower GPU memory" at the paper's sizes.
"""

import json
import statistics
import sys
import time
from functools import partial

import torch

from common.config import load_config, resolve
from common.perceptual import LPIPSDistance, TapNet
from papers.litevae.benchmark import gflops_per_image
from papers.litevae.config import LiteVAEConfig
from papers.litevae.train import PAPER, Trainee, build_model, encoder_of, loss_weights


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` CUDA-synchronised calls."""
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def peak_bytes(fn) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def forward_backward(enc, x):
    enc(x).float().mean().backward()


def train_step(model, opt, x, gen) -> torch.Tensor:
    """One AdamW step of Eq. (5) under bf16 autocast."""
    with torch.autocast("cuda", torch.bfloat16):
        loss = model(x, gen)["total"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def encoder_rows(cfg, dev) -> list:
    bm, rows = cfg.benchmark, []
    x = torch.rand(bm.batch_size, 3, cfg.image_size, cfg.image_size, device=dev) * 2 - 1
    enc = {arm: encoder_of(build_model(cfg, arm)).to(dev) for arm in ("vae", "litevae")}
    for arm, e in enc.items():
        rows.append({"kind": "size", "arm": arm, "encoder_params": sum(p.numel() for p in e.parameters()),
                     "encoder_gflops": gflops_per_image(e, x[:1]),
                     "fwd_bwd_peak_mb": peak_bytes(partial(forward_backward, e, x)) / 2**20})
        e.zero_grad(set_to_none=True)
    for r in range(bm.rounds):
        for arm in (list(enc) if r % 2 == 0 else list(enc)[::-1]):
            for dtype in ("fp32", "bf16"):
                with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=dtype == "bf16"):
                    for _ in range(bm.warmup if r == 0 else 0):
                        enc[arm](x)
                    s = timed(partial(enc[arm], x), bm.repeats)
                rows.append({"kind": "speed", "arm": arm, "round": r, "dtype": dtype, "seconds": s,
                             "images_per_second": bm.batch_size / s})
    return rows


def train_rows(cfg, dev) -> list:
    torch.manual_seed(0)
    trunk = TapNet(3, [64, 128, 256], [2, 2, 2], [False, True, True]).eval()
    dist = LPIPSDistance(trunk, trunk.channels, "stand-in")
    x = torch.rand(cfg.train.batch_size, 3, cfg.image_size, cfg.image_size, device=dev) * 2 - 1
    rows = []
    for arm in cfg.arms:
        model = Trainee(build_model(cfg, arm), dist, loss_weights(cfg)).to(dev)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
        step = partial(train_step, model, opt, x, torch.Generator().manual_seed(0))
        step()
        rows.append({"kind": "train_step", "arm": arm, "batch": cfg.train.batch_size, "peak_mb": peak_bytes(step) / 2**20,
                     "seconds": timed(step, 3), "loss": float(step().detach())})
        del model, opt
        torch.cuda.empty_cache()
    return rows


def main(argv=None):
    cfg = load_config(LiteVAEConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    dev = torch.device("cuda")
    rows = encoder_rows(cfg, dev) + train_rows(cfg, dev)
    speed = {(a, d): statistics.median(r["seconds"] for r in rows if r["kind"] == "speed" and r["arm"] == a
                                      and r["dtype"] == d) for a in ("vae", "litevae") for d in ("fp32", "bf16")}
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "profile": cfg.profile,
           "image_size": cfg.image_size, "batch": cfg.benchmark.batch_size, "rows": rows,
           "speedup": {d: speed[("vae", d)] / speed[("litevae", d)] for d in ("fp32", "bf16")}}
    path = resolve(cfg, cfg.paths.reports, PAPER, "full_benchmark.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}), flush=True)
    for r in rows:
        if r["kind"] != "speed":
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
