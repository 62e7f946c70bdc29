"""Stage `benchmark`: peak working memory of one network call of Inf-DiT, 'ar' vs 'full', as the image grows in
width at a fixed height and in height at a fixed width (the paper's memory claim: block-wise generation needs
memory linear in the width only).

Memory: the peak of the bytes held by tensors CREATED during the call (`PeakTensorMemory`, a torch dispatch mode
that counts every new tensor storage when an operator returns it and subtracts it when the storage is freed), on
the CPU. The image buffers the sampler holds anyway are excluded for both modes: x_T, up(LR), LR and the output
buffer are allocated before the call ('full' copies its result into the same buffer, 'ar' writes block by block
into it). At the paper's scale those buffers are small next to the K/V cache (a 4096^2 RGB image is 0.2 GB, one
cached 128-px block of the 28-layer model 0.15 GB in bf16). What is counted: activations, attention temporaries,
and for 'ar' the per-layer cache of one row of blocks. It depends on shapes only (the model is freshly built with
seed 0; trained weights give the same numbers), so repeats agree to the byte; the wall time of each call is
recorded too. Writes reports/inf_dit/benchmark.json (its rows join results.json's for the claims).
"""

import platform
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from common.eval_stage import EvalStage
from papers.inf_dit.config import InfDiTConfig
from papers.inf_dit.train import PAPER, build


class PeakTensorMemory(TorchDispatchMode):
    """Live and peak bytes of the tensor storages created inside the `with` block (inputs made before it are not
    counted, views of them neither)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._known: weakref.WeakSet = weakref.WeakSet()

    def _count(self, storage) -> None:
        if storage in self._known:
            return
        self._known.add(storage)
        n = storage.nbytes()
        self.live += n
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, n)

    def _free(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {id(t.untyped_storage()) for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t.untyped_storage()) not in inputs:
                self._count(t.untyped_storage())
        return out


def measure(model, h: int, w: int, mode: str) -> dict:
    """Peak working bytes and seconds of one call of `model` at h x w in `mode` (batch 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, model.channels, h, w, generator=g)
    lr = torch.randn(1, model.channels, h // model.sr_scale, w // model.sr_scale, generator=g)
    out = torch.empty_like(x)
    with torch.inference_mode():
        cond = model.condition(lr)
        tracker = PeakTensorMemory()
        for t in (x, lr, out, cond.up, cond.c_lr, cond.lr, *model.parameters(), *model.buffers()):
            tracker._known.add(t.untyped_storage())
        t0 = time.perf_counter()
        with tracker:
            model(x, torch.zeros(1), cond, mode, out=out)
        seconds = time.perf_counter() - t0
    return {"peak_bytes": tracker.peak, "seconds": seconds}


def main(argv=None):
    stage = EvalStage.load(InfDiTConfig, PAPER, argv)
    cfg, bc, S = stage.cfg, stage.cfg.benchmark, stage.cfg.canvas.size
    torch.manual_seed(0)
    channels = 3 if cfg.data.name == "cifar10" else 1
    model = build(cfg, channels).eval()
    fixed = bc.fixed * S
    for r in range(bc.repeats):
        for axis in ("width", "height"):
            for side in bc.sides:
                h, w = (fixed, side * S) if axis == "width" else (side * S, fixed)
                for mode in ("full", "ar"):
                    m = measure(model, h, w, mode)
                    stage.add(comparison="memory", axis=axis, side=side, pixels=f"{h}x{w}", tokens=(h * w) // model.patch_size ** 2,
                              width_blocks=w // model.block_px, mode=mode, repeat=r, peak_mb=m["peak_bytes"] / 2**20,
                              seconds=m["seconds"])
        ratio_rows(stage, r, bc.sides)
    stage.write("benchmark.json", device="cpu", threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                memory_kind="peak bytes of tensors created during one network call (torch dispatch, CPU)",
                params=sum(p.numel() for p in model.parameters()))


def ratio_rows(stage: EvalStage, r: int, sides) -> None:
    """Per repeat: peak memory at the largest side / at the smallest, for each (mode, axis) (the claims' rows)."""
    lo, hi = min(sides), max(sides)
    for mode in ("full", "ar"):
        for axis in ("width", "height"):
            pick = {row["side"]: row["peak_mb"] for row in stage.rows
                    if row.get("comparison") == "memory" and row["repeat"] == r and row["mode"] == mode and row["axis"] == axis}
            stage.add(comparison="memory_growth", mode=mode, axis=axis, repeat=r, side_ratio=hi / lo,
                      growth=pick[hi] / pick[lo])


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
