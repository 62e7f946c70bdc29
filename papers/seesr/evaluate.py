"""Stage `evaluate`: tag accuracy of the taggers on LR, and the SR outputs' content, fidelity and perceptual quality.

(a) Tags on the degraded test scenes (held-out MNIST digits): the raw tagger on LR_up (baseline, one fixed model:
    the same number in every unit) vs the DAPE LoRA student of each training seed (method); mAP (macro over tags,
    sklearn average_precision_score) and F1 (per-scene F1 of the thresholded tags, averaged) against the scenes'
    known (HR) tags; per-scene F1 binned by the drawn blur sigma and noise level (the figure).
(b) SR on the first eval.num_images test scenes, per training seed: `seesr` (hard prompt = tags DAPE predicts on LR,
    soft prompt = DAPE's embeddings; CFG with the null prompt as the unconditional half, the image embeddings kept
    in both halves as the official pipeline) vs `no_prompt` (null text, no image attention, one call per step);
    both from the LRE start with the same per-sample noise (common.sampling.SampleNoise) and DDIM (trailing
    spacing: first step t = 999). Metrics against HR: PSNR / SSIM (common.recon_metrics), lpips[patches-cnn],
    rfid[patches-cnn] (common.patch_trunks), digit accuracy = the shared classifier (models/classifier, 16x16 grey)
    on each occupied 16x16 quadrant, grey = max over RGB channels (the scenes' digits are saturated colours on
    black), against the known digit; colour accuracy = the nearest scene colour (RGB distance) to the SR output's
    mean colour over the HR digit's pixels (HR max channel > 0.5) against the known colour.
(c) The seesr model from the LRE start vs from pure noise (same noise, same sampler).
Writes reports/seesr/results.json and reports/seesr/samples.npz (the figure's images).
"""

import sys
import time

import numpy as np
import torch

from common.atomic import atomic_file
from common.config import load_config, resolve
from common.evaluation import load_classifier
from common.patch_trunks import RFID_KEY, patch_lpips, rfid
from common.recon_metrics import recon_metrics
from common.sampling import SampleNoise, sample_seeds
from common.scenes import COLOURS
from papers.seesr import method
from papers.seesr.backbone import Backbone, refuse_full
from papers.seesr.config import SeeSRConfig
from papers.seesr.dape import load_dape, load_tagger
from papers.seesr.data import read_pairs
from papers.seesr.train import embed, load_sr

PAPER = "seesr"


# --------------------------------------------------------------------------- (a) tags
def tag_scores(probs: torch.Tensor, tags: torch.Tensor, threshold: float):
    """(mAP over tags with a positive, per-scene F1 [N]) of tag probabilities against the known tags."""
    from sklearn.metrics import average_precision_score

    y, p = tags.numpy(), probs.numpy()
    keep = y.sum(0) > 0
    m_ap = float(average_precision_score(y[:, keep], p[:, keep], average="macro"))
    pred = p > threshold
    tp = (pred & (y > 0.5)).sum(1)
    f1 = 2 * tp / np.maximum(pred.sum(1) + y.sum(1), 1)
    return m_ap, f1


def strengths(degradations) -> dict:
    """Per-scene degradation strength: first-order blur sigma (mean of the axes; 0 without blur) and Gaussian noise
    sigma on 0..255 (NaN for Poisson noise)."""
    blur = [0.0 if d["first"]["blur"] is None else (d["first"]["blur"]["sigma_x"] + d["first"]["blur"]["sigma_y"]) / 2
            for d in degradations]
    noise = [d["first"]["noise"][1] * 255 if d["first"]["noise"][0] == "gaussian" else np.nan for d in degradations]
    return {"blur_sigma": np.asarray(blur), "noise_sigma": np.asarray(noise)}


def binned(values: np.ndarray, f1: np.ndarray, bins: int = 4) -> dict:
    ok = np.isfinite(values)
    edges = np.quantile(values[ok], np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, values[ok], side="right") - 1, 0, bins - 1)
    return {"edges": edges.tolist(), "f1": [float(f1[ok][which == b].mean()) for b in range(bins)]}


def evaluate_tags(cfg, test, tagger) -> tuple:
    thr, rows, per_seed = cfg.dape.threshold, [], {}
    raw_map, raw_f1 = tag_scores(embed(tagger, test.lr_up)[1], test.tags, thr)
    hr_map, hr_f1 = tag_scores(embed(tagger, test.hr)[1], test.tags, thr)
    for s in cfg.train_seeds:
        m_ap, f1 = tag_scores(embed(load_dape(cfg, s, tagger), test.lr_up)[1], test.tags, thr)
        per_seed[s] = f1
        rows += [{"comparison": "dape", "arm": "baseline", "train_seed": s, "map": raw_map, "f1": float(raw_f1.mean())},
                 {"comparison": "dape", "arm": "method", "train_seed": s, "map": m_ap, "f1": float(f1.mean())}]
    rows.append({"comparison": "dape", "arm": "hr_tagger", "map": hr_map, "f1": float(hr_f1.mean())})
    st = strengths(test.degradations)
    figure = {k: {"raw": binned(v, raw_f1), "lora": [binned(v, f)["f1"] for f in per_seed.values()],
                  "hr": binned(v, hr_f1)["f1"]} for k, v in st.items()}
    return rows, figure


# --------------------------------------------------------------------------- (b) content of SR outputs
QUAD = 16


@torch.no_grad()
def content_accuracy(classifier, x: torch.Tensor, hr: torch.Tensor, objects) -> tuple:
    """(digit accuracy, colour accuracy) over the occupied quadrants of images x [N, 3, 32, 32] in [-1, 1]."""
    crops, digits, colour_hits = [], [], []
    names, rgb = list(COLOURS), torch.tensor(list(COLOURS.values()), dtype=torch.float32)
    for img, ref, objs in zip(x, hr, objects):
        for q, digit, colour in objs:
            r, c = (q // 2) * QUAD, (q % 2) * QUAD
            crop, ref_crop = img[:, r:r + QUAD, c:c + QUAD], ref[:, r:r + QUAD, c:c + QUAD]
            crops.append(crop.max(0, keepdim=True).values)  # grey = max over channels
            digits.append(digit)
            mask = ref_crop.max(0).values > 0.0  # HR digit pixels (> 0.5 on the 0..1 scale)
            mean = ((crop.clamp(-1, 1) + 1) * 127.5)[:, mask].mean(1)
            colour_hits.append(names[int(((rgb - mean) ** 2).sum(1).argmin())] == colour)
    logits = classifier(torch.stack(crops).clamp(-1, 1))
    return float((logits.argmax(1) == torch.tensor(digits)).float().mean()), float(np.mean(colour_hits))


def image_metrics(cfg, x, hr, objects, classifier, lpips_dist) -> dict:
    m = {k: float(np.mean(v)) for k, v in recon_metrics(x.clamp(-1, 1), hr, (-1, 1), lpips_dist).items()}
    m[RFID_KEY] = rfid(cfg, x.clamp(-1, 1), hr)
    m["digit_acc"], m["colour_acc"] = content_accuracy(classifier, x, hr, objects)
    return m


def run_sr(cfg, model, lr_up, text, null, image, eps, start: str) -> torch.Tensor:
    """SR of a batch-wise split of the inputs (eval.batch_size scenes per call)."""
    b, out = cfg.eval.batch_size, []
    for i in range(0, len(lr_up), b):
        sl = slice(i, i + b)
        out.append(method.super_resolve(model, method.sd_scheduler("ddim"), lr_up[sl],
                                        None if text is None else text[sl], null,
                                        None if image is None else image[sl], eps[sl], cfg.eval.steps,
                                        cfg.eval.guidance, start))
    return torch.cat(out)


def evaluate_sr(cfg, test, tagger, sd: Backbone):
    n = min(cfg.eval.num_images, len(test.hr))
    hr, lr_up, objects = test.hr[:n], test.lr_up[:n], test.objects[:n]
    classifier = load_classifier(resolve(cfg, cfg.paths.models, "classifier"))
    lpips_dist, null, unet = patch_lpips(cfg), sd.null(), sd.unet
    eps = SampleNoise(sample_seeds(cfg.eval.seed, n), hr.shape[1:])()
    rows = [{"comparison": "reference", "arm": name, **image_metrics(cfg, x, hr, objects, classifier, lpips_dist)}
            for name, x in (("bicubic", lr_up), ("hr", hr))]
    samples = {"hr": hr[:cfg.eval.grid], "lr_up": lr_up[:cfg.eval.grid], "lr": test.lr[:cfg.eval.grid]}
    for s in cfg.train_seeds:
        e, probs = embed(load_dape(cfg, s, tagger), lr_up)
        text = sd.text([method.tag_prompt(p > cfg.dape.threshold) for p in probs.float()])
        seesr = load_sr(cfg, "seesr", s, unet)
        outs = {("prompt", "method"): run_sr(cfg, seesr, lr_up, text, null, e, eps, "lre")}
        outs[("prompt", "baseline")] = run_sr(cfg, load_sr(cfg, "no_prompt", s, unet), lr_up, None, null, None, eps,
                                              "lre")
        outs[("lre", "baseline")] = run_sr(cfg, seesr, lr_up, text, null, e, eps, "noise")
        outs[("lre", "method")] = outs[("prompt", "method")]
        for (comp, arm), x in outs.items():
            rows.append({"comparison": comp, "arm": arm, "train_seed": s,
                         **image_metrics(cfg, x, hr, objects, classifier, lpips_dist)})
            samples[f"{comp}_{arm}_seed{s}"] = x[:cfg.eval.grid]
        print(rows[-1], flush=True)
    return rows, {k: v.clamp(-1, 1).numpy() for k, v in samples.items()}


def main(argv=None):
    cfg = load_config(SeeSRConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    refuse_full(cfg)
    t0 = time.time()
    test, tagger, sd = read_pairs(cfg, "test"), load_tagger(cfg), Backbone(cfg)
    tag_rows, tag_figure = evaluate_tags(cfg, test, tagger)
    t1 = time.time()
    sr_rows, samples = evaluate_sr(cfg, test, tagger, sd)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "samples.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **samples)
    import json

    res = {"rows": tag_rows + sr_rows, "tag_figure": tag_figure, "num_test": len(test.hr),
           "num_sr": min(cfg.eval.num_images, len(test.hr)), "tag_eval_seconds": t1 - t0,
           "sr_eval_seconds": time.time() - t1, "abar_999": float(method.sd_scheduler().alphas_cumprod[999])}
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
