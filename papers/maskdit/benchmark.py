"""Stage `benchmark`: training step time and memory of the DiT baseline vs MaskDiT at mask ratio r (and at r = 0),
same encoder width and depth, measured in ONE run with interleaved timing.

Each round times `steps_per_round` optimizer steps (forward, backward, AdamW update; batch `batch_size`) of every
network, in an order that alternates between rounds (DiT, MaskDiT r, MaskDiT r=0, then reversed), after
`warmup` untimed steps each. A round is one unit of the speed claim; machine load that drifts during the run
hits all networks of a round alike. The claim compares the per-round step times; the report also gives the
ratio of medians. Memory: on a GPU, the peak allocated memory of a step (torch.cuda.max_memory_allocated); on
the CPU (no allocator statistics), the bytes of the tensors autograd saves for the backward pass (activation
memory, counted once per storage), which depends on shapes only. FLOPs per step from `train.step_flops`.
Writes reports/maskdit/benchmark.json (its rows join results.json's for the claims).
"""

import platform
import statistics
import time

import torch

from common.config import resolve
from common.data import load_split, to_model_range
from common.devices import default_device
from common.dit import count_parameters, dit_net
from common.edm import EDM, edm_loss
from common.eval_stage import EvalStage
from common.stages import train_dit
from papers.maskdit import method
from papers.maskdit.config import MaskDiTConfig
from papers.maskdit.train import PAPER, build, step_flops


def networks(cfg, channels: int, device):
    """{name: (model, loss(model, x, y, generator))} of the three timed training steps."""
    edm = EDM.from_config(cfg.dit.edm)
    pre, p = edm.preconditioner(), cfg.dit.train.cond_dropout
    null = cfg.dit.net.num_classes

    def maskdit(r):
        return lambda m, x, y, g: method.maskdit_loss(m, edm, x, y, g, r, cfg.mae_coef, p, pre).total

    torch.manual_seed(0)
    return {"dit": (train_dit.build(cfg, channels).to(device), lambda m, x, y, g: edm_loss(dit_net(m), edm, x, y, g, p, null, pre)),
            "maskdit": (build(cfg, channels).to(device), maskdit(cfg.mask_ratio)),
            "maskdit_r0": (build(cfg, channels).to(device), maskdit(0.0))}


def timed_steps(model, loss, opt, x, y, n: int, start: int, device) -> float:
    """Mean wall seconds of n training steps (synchronised on a GPU)."""
    t0 = time.perf_counter()
    for k in range(n):
        opt.zero_grad(set_to_none=True)
        loss(model, x, y, torch.Generator().manual_seed(start + k)).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def activation_bytes(model, loss, x, y, device) -> int:
    """Peak allocated bytes of one training step on a GPU; on the CPU, bytes autograd saves for backward."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        loss(model, x, y, torch.Generator().manual_seed(0)).backward()
        return int(torch.cuda.max_memory_allocated(device))
    seen, total = set(), [0]

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen:
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = loss(model, x, y, torch.Generator().manual_seed(0))
    out.backward()
    model.zero_grad(set_to_none=True)
    return total[0]


def main(argv=None):
    stage = EvalStage.load(MaskDiTConfig, PAPER, argv)
    cfg, bc = stage.cfg, stage.cfg.benchmark
    device = default_device()
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))[:bc.batch_size]
    x, y = to_model_range(x[pick]).to(device), y[pick].to(device)  # one real batch, the same for every network
    nets = networks(cfg, x.shape[1], device)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=cfg.dit.train.lr) for k, (m, _) in nets.items()}
    for k, (m, loss) in nets.items():
        m.train()
        timed_steps(m, loss, opts[k], x, y, bc.warmup, 0, device)
    names = list(nets)
    for r in range(bc.rounds):
        for k in names if r % 2 == 0 else names[::-1]:
            m, loss = nets[k]
            t = timed_steps(m, loss, opts[k], x, y, bc.steps_per_round, 1000 * (r + 1), device)
            stage.add(comparison="speed", network=k, arm={"dit": "baseline", "maskdit": "method"}.get(k, "other"),
                      round=r, step_seconds=t)
    flops = step_flops(cfg, x.shape[1])
    per = {k: {"params": count_parameters(m), "memory_bytes": activation_bytes(m, loss, x, y, device),
               "step_flops": flops[{"dit": "dit", "maskdit": "masked", "maskdit_r0": "unmasked"}[k]],
               "median_step_seconds": statistics.median(r["step_seconds"] for r in stage.rows if r["network"] == k)}
           for k, (m, loss) in nets.items()}
    for k, v in per.items():  # one row per network for the by-design claims (memory and FLOPs depend on shapes)
        stage.add(comparison="cost", network=k, arm={"dit": "baseline", "maskdit": "method"}.get(k, "other"),
                  round=0, memory_mb=v["memory_bytes"] / 2**20, gflops_per_step=v["step_flops"] / 1e9)
    stage.write("benchmark.json", networks=per, device=str(device), threads=torch.get_num_threads(),
                cpu=platform.processor() or platform.machine(), memory_kind=(
                    "peak allocated (CUDA)" if device.type == "cuda" else "saved activations (autograd, CPU)"),
                speed_ratio=per["maskdit"]["median_step_seconds"] / per["dit"]["median_step_seconds"],
                flops_ratio=per["maskdit"]["step_flops"] / per["dit"]["step_flops"])


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
