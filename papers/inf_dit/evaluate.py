"""Stage `evaluate`: super-resolution of held-out digit canvases at the training size and larger, seams, and the
'full' == 'ar' check.

Test canvases are built from the HELD-OUT digits (train.canvases, seeded by the sampling seed) and cropped at an
offset of half a digit cell on both axes, so the borders of the training-size tiles cut through digits. Every image
of a set starts from its own seeded noise (x_T = sigma_max z); all arms of a (training seed, sampling seed, size)
share HR, LR and noise. For each training seed and sampling seed:

- `sizes`: Inf-DiT ('full' mode, one pass; 'ar' gives the same output) at every size of eval.sizes: PSNR / SSIM
  against the HR canvas (scikit-image, data range [-1, 1]), and the same for bicubic up(LR).
- `seams` (at eval.seam_size): Inf-DiT vs independent-patch SR (the same model on each training-size LR tile on its
  own, then stitched; method.independent_patches): seam ratio (method.seam_ratio, tile = canvas.size), PSNR, SSIM and
  the class accuracy of the shared classifier (common/evaluation.py) on the fully visible digit cells.
- `accuracy`: that class accuracy for Inf-DiT vs bicubic up(LR) (and HR, the ceiling).
- `equivalence`: two images at the seam size sampled with eval.check_steps steps in 'full' and in 'ar' mode: the
  largest absolute difference, and the most blocks one layer's 'ar' cache held (expected W_blocks + 1).
Writes reports/inf_dit/results.json and sample grids in reports/inf_dit/samples.
"""

from typing import Dict, List

import numpy as np
import torch

from common.config import resolve
from common.data import load_split, to_uint8
from common.edm import EDM
from common.eval_stage import EvalStage
from common.evaluation import backbone_name, classifier_accuracy, extract_features, metric_key
from common.report import save_grid
from common.sampling import SampleNoise, sample_seeds
from papers.inf_dit import method
from papers.inf_dit.config import InfDiTConfig
from papers.inf_dit.train import PAPER, canvases, load_model


def size_name(h: int, w: int, canvas: int) -> str:
    return f"{h // canvas}x{w // canvas}"


def fidelity(sr: torch.Tensor, hr: torch.Tensor) -> Dict[str, float]:
    """Mean PSNR (dB) and SSIM over images, both in [-1, 1] (data range 2), scikit-image's definitions."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = sr.clamp(-1, 1).double().numpy(), hr.double().numpy()
    psnr = [peak_signal_noise_ratio(b[k], a[k], data_range=2.0) for k in range(len(a))]
    ssim = [structural_similarity(b[k], a[k], data_range=2.0, channel_axis=0) for k in range(len(a))]
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}


class CellScorer:
    """Class accuracy of the shared classifier on the digit cells that lie fully inside an image."""

    def __init__(self, cfg, cell: int):
        self.cell = cell
        self.backbone = backbone_name(cfg.data.name)
        self.weights = resolve(cfg, cfg.paths.models, "classifier")
        self.key = metric_key("class_acc", self.backbone)

    def __call__(self, img: torch.Tensor, labels: torch.Tensor, offset: int) -> float:
        """img [n, C, H, W] in [-1, 1]; labels [n, rows, cols] of the canvas grid cropped at `offset`."""
        cell = self.cell
        crops, ys = [], []
        for a in range(1, labels.shape[1]):
            for b in range(1, labels.shape[2]):
                top, left = a * cell - offset, b * cell - offset
                if top + cell <= img.shape[2] and left + cell <= img.shape[3]:
                    crops.append(img[:, :, top:top + cell, left:left + cell])
                    ys.append(labels[:, a, b])
        logits = extract_features(to_uint8(torch.cat(crops)), self.backbone, self.weights)["logits"]
        return classifier_accuracy(logits, torch.cat(ys))


def test_set(cfg, x, y, h: int, w: int, seed: int):
    """(HR [n, C, h, w] in [-1, 1], LR, grid labels, noise) of one size, all seeded by the sampling seed."""
    from common.data import to_model_range

    g = torch.Generator().manual_seed(seed * 1000 + h * 7 + w)
    hr, labels = canvases(x, y, cfg.eval.num_images, h, w, g, offset=x.shape[-1] // 2)
    hr = to_model_range(hr)
    noise = SampleNoise(sample_seeds(seed * 1000 + h + 3 * w, len(hr)), tuple(hr.shape[1:]), torch.device("cpu"))()
    return hr, method.downsample(hr, cfg.net.sr_scale), labels, noise


def evaluate_seed(st: EvalStage, cfg, model, edm, x, y, scorer: CellScorer, train_seed: int, seed: int) -> None:
    ev, S, off = cfg.eval, cfg.canvas.size, x.shape[-1] // 2
    seam = tuple(s * S for s in ev.seam_size)
    first = train_seed == cfg.train_seeds[0] and seed == ev.seeds[0]
    for a, b in ev.sizes:
        h, w = a * S, b * S
        hr, lr, labels, noise = test_set(cfg, x, y, h, w, seed)
        sr = method.super_resolve(model, edm, lr, noise, ev.num_steps)
        bicubic = method.upsample(lr, cfg.net.sr_scale)
        name = size_name(h, w, S)
        for arm, img in (("infdit", sr), ("bicubic", bicubic)):
            st.add(comparison="sizes", size=name, pixels=f"{h}x{w}", set=arm, train_seed=train_seed, sample_seed=seed,
                   **fidelity(img, hr), seam_ratio=float(method.seam_ratio(img, S).mean()))
        if first:
            k = min(8, len(hr))
            save_grid(to_uint8(torch.cat([bicubic[:k], sr[:k], hr[:k]])), st.samples / f"sr_{name}.png", nrow=k)
        if (h, w) == seam:
            seams(st, cfg, model, edm, hr, lr, labels, noise, sr, bicubic, scorer, off, train_seed, seed, first)


def seams(st, cfg, model, edm, hr, lr, labels, noise, sr, bicubic, scorer, off, train_seed, seed, first) -> None:
    """The seam rows (Inf-DiT vs independent patches) and the accuracy rows (Inf-DiT vs bicubic, HR)."""
    S, tile = cfg.canvas.size, cfg.canvas.size // cfg.net.sr_scale
    patches = method.independent_patches(model, edm, lr, noise, cfg.eval.num_steps, tile)
    acc = {k: scorer(img, labels, off) for k, img in (("infdit", sr), ("patches", patches), ("bicubic", bicubic),
                                                       ("hr", hr))}
    for arm, name, img in (("method", "infdit", sr), ("baseline", "patches", patches)):
        st.add(comparison="seams", arm=arm, set=name, train_seed=train_seed, sample_seed=seed,
               seam_ratio=float(method.seam_ratio(img, S).mean()), **fidelity(img, hr), **{scorer.key: acc[name]})
    for arm, name in (("method", "infdit"), ("baseline", "bicubic"), ("reference", "hr")):
        st.add(comparison="accuracy", arm=arm, set=name, train_seed=train_seed, sample_seed=seed,
               **{scorer.key: acc[name]})
    st.add(comparison="seams", arm="reference", set="hr", train_seed=train_seed, sample_seed=seed,
           seam_ratio=float(method.seam_ratio(hr, S).mean()))
    if first:
        k = min(8, len(hr))
        save_grid(to_uint8(torch.cat([patches[:k], sr[:k], hr[:k]])), st.samples / "seams.png", nrow=k)
        maps = [seam_map(img[:k]) for img in (patches, sr, hr)]
        save_grid(to_uint8(torch.cat(maps)), st.samples / "seam_maps.png", nrow=k)


def seam_map(img: torch.Tensor) -> torch.Tensor:
    """Gradient energy |dx|^2 + |dy|^2 per pixel, scaled to [-1, 1] per image (figure of where the seams are)."""
    dx = torch.nn.functional.pad((img[..., :, 1:] - img[..., :, :-1]) ** 2, (0, 1))
    dy = torch.nn.functional.pad((img[..., 1:, :] - img[..., :-1, :]) ** 2, (0, 0, 0, 1))
    e = (dx + dy).sqrt()
    return e / e.flatten(1).amax(1).clamp_min(1e-8)[:, None, None, None] * 2 - 1


def equivalence(st: EvalStage, cfg, model, edm, x, y, train_seed: int) -> None:
    """'full' vs 'ar' sampling of 2 images at the seam size: max |difference| and the 'ar' cache size."""
    S, ev = cfg.canvas.size, cfg.eval
    h, w = (s * S for s in ev.seam_size)
    _, lr, _, noise = test_set(cfg, x, y, h, w, ev.seeds[0])
    lr, noise = lr[:2], noise[:2]
    full = method.super_resolve(model, edm, lr, noise, ev.check_steps, "full")
    ar = method.super_resolve(model, edm, lr, noise, ev.check_steps, "ar")
    stats: dict = {}
    with torch.inference_mode():
        cond = model.condition(lr)
        model(noise, torch.zeros(len(lr)), cond, "ar", stats=stats)
    bw = w // model.block_px
    st.add(comparison="equivalence", train_seed=train_seed, max_abs_diff=float((full - ar).abs().max()),
           cached_blocks=stats["cached_blocks"], width_blocks=bw, cache_excess=stats["cached_blocks"] - (bw + 1))


def main(argv=None):
    st = EvalStage.load(InfDiTConfig, PAPER, argv)
    cfg = st.cfg
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "heldout")
    edm, scorer = EDM.from_config(cfg.edm), CellScorer(cfg, x.shape[-1])
    for train_seed in cfg.train_seeds:
        model = load_model(cfg, train_seed, x.shape[1])
        for seed in cfg.eval.seeds:
            evaluate_seed(st, cfg, model, edm, x, y, scorer, train_seed, seed)
        equivalence(st, cfg, model, edm, x, y, train_seed)
    sizes: List[str] = [size_name(a * cfg.canvas.size, b * cfg.canvas.size, cfg.canvas.size) for a, b in cfg.eval.sizes]
    st.write(metric=scorer.key, backbone=scorer.backbone, sizes=sizes,
             seam_size=size_name(*(s * cfg.canvas.size for s in cfg.eval.seam_size), cfg.canvas.size))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
