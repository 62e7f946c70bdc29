"""Data Filtering Networks (Fang et al., ICLR 2024): the paper's idea, top to bottom.

A data filtering network (DFN) is a CLIP model f trained on high-quality pairs. It scores every pair
(x, t) of an uncurated pool by the cosine of its L2-normalised embeddings (Sec. 3),

    s(x, t) = < f_img(x) / ||f_img(x)||,  f_txt(t) / ||f_txt(t)|| >                       (score)

and the induced dataset is the top fraction of the pool by s (DFN-2B: the top 15% of the 12.8B
CommonPool). The paper's findings tested here: (1)-(2) a student CLIP trained on the DFN-induced
dataset beats one trained on the unfiltered pool and on heuristically filtered data at equal compute;
(3) the filter's own accuracy does not predict its filtering quality: polluting the filter's training
data with uncurated pool pairs hurts the induced dataset far more than the filter's own accuracy
(Sec. 4, "data quality is key to training good filtering models").

Thresholding semantics (a pitfall when comparing with DataComp):
- `keep_top_fraction` (ours, = common.clip_runs.top_fraction) keeps EXACTLY n = round(f * N) pairs,
  ties broken by pool index, so that arms of equal fraction have equal size;
- `datacomp_keep` is DataComp's rule (baselines/apply_filter.py, `get_threshold` +
  `load_uids_with_clip_score_helper`): n = int(N * f), threshold = the score at position n of the
  descending order, keep score >= threshold, i.e. n + 1 pairs plus ties.
  Example: scores [.9, .8, .8, .7, .1], f = .4 -> DataComp keeps 3, we keep 2.

The heuristic baseline (our stand-in for DataComp's "basic" / rule-based filtering, which uses no
learned image-text model): a pair passes if the colour words of its caption are exactly the set of
palette colours found in the image (hue of the bright pixels) and its count word equals the number
of connected bright blobs. Like DataComp's basic filter it keeps every pair that passes (no fixed
fraction).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch

from common.clip_runs import top_fraction
from common.scenes import COLOURS, COUNT_WORDS

# --------------------------------------------------------------------------- the DFN score


def l2_normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def dfn_scores(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Eq. (score): cosine of the L2-normalised image and text embeddings of each pair; [N, d] x2 -> [N]."""
    return (l2_normalise(image_emb.float()) * l2_normalise(text_emb.float())).sum(-1)


@torch.no_grad()
def score_pairs(model, tok, images_u8: torch.Tensor, captions: Sequence[str], context_length: int,
                batch: int = 1000) -> np.ndarray:
    """The DFN score of each pair under CLIP `model` (raw tower outputs, normalised by `dfn_scores`)."""
    from common.clip import to_input, tokenize

    model.eval()
    tokens = tokenize(tok, captions, context_length)
    out = []
    for i in range(0, len(tokens), batch):
        img = model.encode_image(to_input(images_u8[i:i + batch]))
        txt = model.encode_text(tokens[i:i + batch])
        out.append(dfn_scores(img, txt))
    return torch.cat(out).numpy().astype(np.float64)


# --------------------------------------------------------------------------- thresholding


def keep_top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Ours: indices of exactly round(fraction * N) highest scores (ties by index)."""
    return top_fraction(np.asarray(scores), fraction)


def datacomp_threshold(scores: np.ndarray, fraction: float) -> float:
    """DataComp's `get_threshold`: n = int(N * fraction); the score at position n of the descending order."""
    s = -np.sort(-np.asarray(scores, dtype=np.float64))
    n = int(len(s) * fraction)
    if n >= len(s):
        return float(s[-1])
    return float(s[n])


def datacomp_keep(scores: np.ndarray, fraction: float) -> np.ndarray:
    """DataComp's rule: indices with score >= datacomp_threshold (n + 1 items plus ties)."""
    return np.flatnonzero(np.asarray(scores, dtype=np.float64) >= datacomp_threshold(scores, fraction))


# --------------------------------------------------------------------------- filtering quality


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random clean pair > score of a random noisy pair), ties count 1/2 (Mann-Whitney U)."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def filtering_quality(scores: np.ndarray, clean: np.ndarray, fraction: float,
                      severity: np.ndarray = None) -> Dict[str, float]:
    """Ground-truth quality of the induced dataset: clean share of the kept top fraction (precision),
    the share of all clean pairs it keeps (recall), ROC AUC clean vs noisy, and the kept share per
    noise severity (1 wrong colour, 2 wrong digit, 3 unrelated)."""
    clean = np.asarray(clean, dtype=bool)
    keep = keep_top_fraction(scores, fraction)
    out = {"precision": float(clean[keep].mean()) if len(keep) else float("nan"),
           "recall": float(clean[keep].sum() / max(1, clean.sum())),
           "auc": roc_auc(scores, clean), "n_keep": int(len(keep)),
           "max_precision": float(min(1.0, clean.sum() / max(1, len(keep))))}
    if severity is not None:
        sev = np.asarray(severity)[keep]
        for k in range(4):
            out[f"kept_share_severity_{k}"] = float((sev == k).mean()) if len(keep) else float("nan")
    return out


# --------------------------------------------------------------------------- the filter's training data


def pollute(n_hq: int, n_pool: int, share: float, seed: int) -> Dict[str, np.ndarray]:
    """Filter training data of size n_hq with a share p of its pairs replaced by uncurated pool pairs.

    Returns the hq indices kept and the pool indices drawn (round(p * n_hq) of each replaced; Sec. 4's
    experiment adds CommonPool data to the filter's high-quality training set)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"filter.dirty_shares: {share} is not in [0, 1]")
    rng = np.random.default_rng(seed)
    k = int(round(share * n_hq))
    if k > n_pool:
        raise ValueError(f"filter.dirty_shares: {share} x {n_hq} hq pairs needs {k} pool pairs, pool has {n_pool}")
    return {"hq": np.sort(rng.permutation(n_hq)[k:]), "pool": np.sort(rng.choice(n_pool, size=k, replace=False))}


# --------------------------------------------------------------------------- the heuristic baseline


def image_colours_and_blobs(images_u8: torch.Tensor, brightness: int = 100, min_colour_pixels: int = 6,
                            min_blob_area: int = 4, dilation: int = 1):
    """Cheap image statistics: per image, the palette colours covering >= min_colour_pixels bright pixels
    (nearest palette hue by cosine in RGB) and the number of connected bright blobs (8-connectivity,
    after `dilation` steps of binary dilation so that broken strokes join; blobs of < min_blob_area
    bright pixels are ignored). images uint8 [N, 3, H, W] -> (bool [N, n_colours], int [N])."""
    from scipy import ndimage

    names = list(COLOURS)
    pal = torch.tensor([COLOURS[c] for c in names], dtype=torch.float32)
    pal = pal / pal.norm(dim=1, keepdim=True)
    present, blobs = [], []
    for i in range(0, len(images_u8), 2000):
        x = images_u8[i:i + 2000].float()  # [n, 3, H, W]
        bright = (x.amax(1) > brightness).numpy()  # [n, H, W]
        hue = torch.einsum("nchw,kc->nkhw", x / x.norm(dim=1, keepdim=True).clamp_min(1e-6), pal).argmax(1).numpy()
        counts = np.stack([((hue == k) & bright).sum((1, 2)) for k in range(len(names))], 1)
        present.append(counts >= min_colour_pixels)
        mask = bright
        if dilation:
            st2 = np.zeros((3, 3, 3), dtype=bool)
            st2[1] = ndimage.generate_binary_structure(2, 1)
            mask = ndimage.binary_dilation(bright, structure=st2, iterations=dilation)
        st = np.zeros((3, 3, 3), dtype=bool)
        st[1] = True  # 8-connectivity inside an image, never across images
        lab, n = ndimage.label(mask, structure=st)
        area = np.bincount(lab.ravel(), weights=bright.ravel().astype(np.float64), minlength=n + 1)
        big = np.flatnonzero(area >= min_blob_area)
        big = big[big > 0]
        ids, first = np.unique(lab.ravel(), return_index=True)
        owner = np.zeros(n + 1, dtype=np.int64)
        owner[ids] = first // lab[0].size  # the image each blob lies in
        blobs.append(np.bincount(owner[big], minlength=len(lab)))
    return np.concatenate(present), np.concatenate(blobs)


def caption_colours_and_count(captions: Sequence[str]):
    """The colour words (as a bool [N, n_colours] set) and the count word (int [N]) of each caption."""
    names = list(COLOURS)
    count_of = {v.split()[0]: k for k, v in COUNT_WORDS.items()}
    cols = np.zeros((len(captions), len(names)), dtype=bool)
    count = np.zeros(len(captions), dtype=np.int64)
    for i, c in enumerate(captions):
        words = c.replace(",", " ").replace(":", " ").split()
        for w in words:
            if w in COLOURS:
                cols[i, names.index(w)] = True
        count[i] = count_of.get(words[0], -1) if words else -1
    return cols, count


def heuristic_keep(images_u8: torch.Tensor, captions: Sequence[str], rules: Sequence[str] = ("colour", "count"),
                   **image_kw) -> np.ndarray:
    """Indices of the pairs that pass every rule: 'colour' (caption colour set == image colour set),
    'count' (caption count word == number of blobs)."""
    unknown = set(rules) - {"colour", "count"}
    if unknown:
        raise ValueError(f"heuristic.rules: unknown rule(s) {sorted(unknown)}; known: colour, count")
    img_cols, blobs = image_colours_and_blobs(images_u8, **image_kw)
    cap_cols, count = caption_colours_and_count(captions)
    ok = np.ones(len(captions), dtype=bool)
    if "colour" in rules:
        ok &= (img_cols == cap_cols).all(1)
    if "count" in rules:
        ok &= blobs == count
    return np.flatnonzero(ok)
