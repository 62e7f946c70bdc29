"""Stage `evaluate`: resolution and aspect extrapolation of the models trained at data.resolution.

For each training seed, the Flag-DiT (`flag`) is sampled at every size of `eval.sizes` (multiples of the training
resolution) with each RoPE scaling of `eval.scalings` (plain; `ntk`: NTK-scaled RoPE, ntk = patch tokens at the
target size / at the training size; `prop`: proportional attention, softmax scale sqrt(log_{N_train} N / d_h) with
N_train the training sequence length; `ntk+prop`: both), and the absolute-position DiT (`absolute`) plainly. The
high-lr models are sampled at the training size. All sets of one (training seed, sampling seed, size) share their
initial noise and labels (0..9 in turn).

Scoring, in the shared classifier's feature space (fid[mnist-classifier], class accuracy):
- resized (the claims' metric, `class_acc`, `fid`): each sample is area-resized to the training resolution. The
  classifier is a CNN trained on digits of that size, so its features are valid there and not at 2x; a coherent
  extrapolation is the same digit drawn larger (or wider), which the resize maps back to a normal digit. The
  metric's floor at each size is a real digit enlarged to that size (bilinear) and resized back (`real` rows).
- `crop_acc`: class accuracy over the non-overlapping training-size crops of each sample (do the parts look like
  the digit: the tiling failure mode of extrapolation).
Writes reports/lumina_flag_dit/results.json: one row per sample set (`comparison: extrapolation`), the paired rows
of the claims (`scaling`: ntk+prop vs plain; `vs_absolute`: Flag-DiT with ntk+prop vs the absolute-position DiT),
the high-lr sets (`high_lr`) and the real-data rows (`real`).
"""

import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from common.config import resolve
from common.data import balanced_subset, load_split, to_uint8
from common.devices import default_device
from common.eval_stage import EvalStage
from common.evaluation import SampleScorer, extract_features
from common.flow_matching import euler_sample
from papers.lumina_flag_dit import method
from papers.lumina_flag_dit.config import LuminaFlagDiTConfig
from papers.lumina_flag_dit.train import PAPER, load_model, run_name

# claim rows: (baseline set, method set) of each comparison; a set is a scaling of `flag` or the `absolute` model
CLAIM_PAIRS = {"scaling": ("plain", "ntk+prop"), "vs_absolute": ("absolute", "ntk+prop")}


def size_name(H: int, W: int, res: int) -> str:
    """A size as multiples of the training resolution ("1x2": 2x width), the same on every profile."""
    return f"{H // res}x{W // res}"


def scaling_args(name: str, net: method.FlagDiT, H: int, W: int, res: int) -> Tuple[float, Optional[int]]:
    """(ntk_factor, base_seqlen) of a scaling at an H x W canvas, for a model trained at res x res."""
    p = net.patch_size
    ntk = method.ntk_factor_for(H // p, W // p, res // p, res // p)
    base = net.seq_len(res, res)
    return {"plain": (1.0, None), "ntk": (ntk, None), "prop": (1.0, base), "ntk+prop": (ntk, base)}[name]


def sample_set(cfg, net, tok, n: int, H: int, W: int, seed: int, ntk: float, base: Optional[int]):
    """(uint8 images [n, C, H, W], labels, seconds): guided Euler sampling of the flow from seeded noise."""
    t0 = time.perf_counter()
    ev, device = cfg.eval, default_device()
    labels = torch.arange(n) % len(cfg.captions)
    noise = torch.randn((n, net.in_channels, H, W), generator=torch.Generator().manual_seed(seed))
    v = method.guided_velocity(net.to(device), tok, labels.to(device), ev.guidance_scale, ntk, base)
    x = euler_sample(v, noise.to(device), ev.nfe, ev.shift)
    return to_uint8(x.cpu()), labels, time.perf_counter() - t0


def score(scorer: SampleScorer, img: torch.Tensor, labels: torch.Tensor, res: int) -> Dict[str, float]:
    """Resized metrics (fid, class accuracy, ...) and the crop accuracy, keyed with the backbone."""
    small = F.interpolate(img.float(), size=(res, res), mode="area").round().clamp(0, 255).to(torch.uint8)
    out = scorer.score(small, labels)
    H, W = img.shape[-2:]
    crops = torch.cat([img[..., i:i + res, j:j + res] for i in range(0, H, res) for j in range(0, W, res)])
    logits = extract_features(crops, scorer.backbone, scorer.weights_dir, scorer.device)["logits"]
    out[scorer.key("crop_acc")] = float((logits.argmax(1) == labels.repeat(len(crops) // len(labels))).float().mean())
    return out


def real_rows(cfg, scorer, st: EvalStage, sizes):
    """The metrics' floor at each size: real training digits enlarged (bilinear) to it, scored like samples."""
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    pick = balanced_subset(y, cfg.eval.num_samples, len(cfg.captions), cfg.seed)
    res = cfg.data.resolution
    for H, W in sizes:
        big = F.interpolate(x[pick].float(), size=(H, W), mode="bilinear", align_corners=False)
        st.add(comparison="real", size=size_name(H, W, res), pixels=f"{H}x{W}", **score(scorer, big.round().clamp(0, 255).to(torch.uint8),
                                                                   y[pick], res))


def main(argv=None):
    st = EvalStage.load(LuminaFlagDiTConfig, PAPER, argv)
    cfg, ev, res = st.cfg, st.cfg.eval, st.cfg.data.resolution
    scorer = SampleScorer(resolve(cfg, cfg.paths.data, "prepared"), resolve(cfg, cfg.paths.models, "classifier"),
                          cfg.data.name)
    tok = method.CaptionTokenizer(cfg.captions)
    sizes = [(h * res, w * res) for h, w in ev.sizes]
    real_rows(cfg, scorer, st, sizes)
    calls = 0
    for train_seed in cfg.train_seeds:
        flag, _ = load_model(cfg, resolve(cfg, cfg.paths.models, PAPER, run_name("flag", train_seed)))
        absolute, _ = load_model(cfg, resolve(cfg, cfg.paths.models, PAPER, run_name("absolute", train_seed)))
        for seed in ev.seeds:
            for H, W in sizes:
                sets = {}
                for name in (ev.scalings if (H, W) != (res, res) else ["plain"]):
                    img, y, secs = sample_set(cfg, flag, tok, ev.num_samples, H, W, seed, *scaling_args(name, flag, H, W, res))
                    sets[name] = score(scorer, img, y, res)
                    st.add(comparison="extrapolation", model="flag", scaling=name, size=size_name(H, W, res),
                           pixels=f"{H}x{W}", train_seed=train_seed, sample_seed=seed, seconds=secs, **sets[name])
                    if train_seed == cfg.train_seeds[0] and seed == ev.seeds[0]:
                        st.save_grid(img, f"flag_{size_name(H, W, res)}_{name}", n=50)
                img, y, secs = sample_set(cfg, absolute, tok, ev.num_samples, H, W, seed, 1.0, None)
                sets["absolute"] = score(scorer, img, y, res)
                st.add(comparison="extrapolation", model="absolute", scaling="plain", size=size_name(H, W, res),
                       pixels=f"{H}x{W}", train_seed=train_seed, sample_seed=seed, seconds=secs, **sets["absolute"])
                if train_seed == cfg.train_seeds[0] and seed == ev.seeds[0]:
                    st.save_grid(img, f"absolute_{size_name(H, W, res)}", n=50)
                calls += 2 * ev.nfe * ev.num_samples * len(sets)
                claim_rows(st, sets, H, W, res, train_seed, seed)
        if ev.high_lr_samples:
            calls += high_lr_sets(cfg, st, scorer, tok, train_seed)
    st.write(metric=scorer.key("class_acc"), backbone=scorer.backbone, num_reference=scorer.num_reference,
             model_calls=calls, sizes=[size_name(H, W, res) for H, W in sizes])


def claim_rows(st: EvalStage, sets: Dict[str, dict], H: int, W: int, res: int, train_seed: int, seed: int):
    """The paired rows the claims read: arm baseline / method of each comparison at this size."""
    for comparison, (base, meth) in CLAIM_PAIRS.items():
        meth = meth if meth in sets else "plain"  # at the training size every scaling is the plain model
        if base not in sets or (comparison == "scaling" and (H, W) == (res, res)):
            continue
        for arm, name in (("baseline", base), ("method", meth)):
            st.rows.append({"comparison": comparison, "size": size_name(H, W, res), "arm": arm, "set": name,
                            "train_seed": train_seed, "sample_seed": seed, **sets[name]})


def high_lr_sets(cfg, st: EvalStage, scorer, tok, train_seed: int) -> int:
    """The high-lr models (with / without QK-norm) sampled at the training size; non-finite ones are skipped."""
    calls, res, ev = 0, cfg.data.resolution, cfg.eval
    for name, arm in (("qknorm", "method"), ("no_qknorm", "baseline")):
        net, meta = load_model(cfg, resolve(cfg, cfg.paths.models, PAPER, run_name(name, train_seed)))
        if meta["nonfinite"]:
            st.log(skipped=run_name(name, train_seed), reason="non-finite weights")
            continue
        img, y, secs = sample_set(cfg, net, tok, ev.num_samples, res, res, ev.seeds[0], 1.0, None)
        st.add(comparison="high_lr", arm=arm, run=name, train_seed=train_seed, sample_seed=ev.seeds[0], seconds=secs,
               **score(scorer, img, y, res))
        if train_seed == cfg.train_seeds[0]:
            st.save_grid(img, f"high_lr_{name}", n=50)
        calls += 2 * ev.nfe * ev.num_samples
    return calls


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
