"""Stage `evaluate`: every judge on every benchmark instance (one per unit seed), all four perspectives.

Judges (common/judges.py): `clip` (the scene CLIP's cosine), `reward_model` (Bradley-Terry head trained with the
unit's seed on pairs of the TRAINING digits, papers/mj_bench/reward.py), `reward_model[root]` (the same recipe,
root stage train_reward_model: a reference row), `minilm` (text only: the prompt against the image's
ground-truth caption, all-MiniLM-L6-v2; it needs the ground truth, so it applies to rendered scenes only),
`oracle[pixels]` (the prompt's statements checked on objects read off the pixels with the shared classifier) and
`oracle` (the ground truth with the benchmark's rules: prompt agreement, minus 1 for the unsafe colour, minus 1
for a degraded copy: it defines the labels, so it calibrates the benchmark).

Rows (reports/mj_bench/results.json):
- `table`: per unit, judge, perspective and tie threshold: acc w/ tie, acc w/o tie, the share of tie
  predictions. Thresholds apply to the judge's scores min-max normalised over that unit and perspective (chosen
  and rejected together), so one grid serves judges on different scales;
- `kind`: per unit, judge and kind at threshold 0;
- `bias`: per unit and judge: ACC, GES, NDS normalised (evaluate_bias_type.py) and raw (evaluate_bias_avg.py);
- claim rows (`comparison`, `arm`): rm_vs_clip, bias_fairness, tie_gap, tie_order, oracle_calibration.
"""

from typing import Dict

import numpy as np

from common.clip import build_tokenizer, load_clip
from common.config import UserError, resolve
from common.eval_stage import EvalStage
from common.evaluation import load_classifier
from common.judges import ClipJudge, MiniLMJudge, OracleJudge, agreement, load_reward_model
from common.prompts import parse_prompt
from common.stages.train_reward_model import digit_banks
from common.t2i import load_t2i
from papers.mj_bench import method
from papers.mj_bench.benchmark import PERSPECTIVES, add_t2i_pairs, bias_groups, contains, preference_set, stack
from papers.mj_bench.config import MJBenchConfig
from papers.mj_bench.reward import train_unit_reward_model

PAPER = "mj_bench"
TRUTH_JUDGES = ("minilm",)  # judges that read the ground truth instead of the pixels


def refuse_full(cfg):
    if cfg.published is not None:
        raise UserError("papers/mj_bench: the full profile is not runnable yet: it needs the MJ-Bench dataset "
                        "(MJ-Bench/MJ-Bench on the Hugging Face hub, 4,348 items) and the published judges "
                        f"({cfg.published.clip_model}, HPS-v2.1, PickScore, ImageReward, BLIP); the parameter count "
                        "of the CLIP judge is checked by tests/papers/test_mj_bench.py on the meta device")


def load_judges(cfg):
    """(fixed judges, (scene CLIP, tokenizer)); the unit's own reward model is added per seed (unit_judges)."""
    tok = build_tokenizer()
    clip_model = load_clip(resolve(cfg, cfg.paths.models, "scene_clip"), cfg.scene_clip.model, tok, "train_scene_clip")
    classifier = load_classifier(resolve(cfg, cfg.paths.models, "classifier"))
    return {"clip": ClipJudge(clip_model, tok, cfg.scene_clip.model.context_length),
            "reward_model[root]": load_reward_model(resolve(cfg, cfg.paths.models, "reward_model"), cfg),
            "minilm": MiniLMJudge(), "oracle[pixels]": OracleJudge(classifier, cfg.data.resolution)}, (clip_model, tok)


def unit_judges(cfg, fixed, clip_tok, train_bank, seed: int) -> Dict[str, object]:
    """The fixed judges plus `reward_model`: the head trained with the unit's seed on training-digit pairs."""
    rm = train_unit_reward_model(cfg, *clip_tok, train_bank, seed, cfg.rm_train_pairs)
    return {"clip": fixed["clip"], "reward_model": rm, **{k: v for k, v in fixed.items() if k != "clip"}}


def ground_truth_scores(prompts, truth, unsafe, degraded: bool) -> np.ndarray:
    """The benchmark's oracle: agreement of the prompt with the objects, -1 for the unsafe colour (safety
    perspective only: `unsafe` None elsewhere), -1 if degraded (the quality perspective's rejected copies)."""
    return np.array([agreement(parse_prompt(p), list(t)) - contains(t, unsafe) - degraded
                     for p, t in zip(prompts, truth)], dtype=float)


def score(judges, name, images, prompts, truth) -> np.ndarray:
    j = judges[name]
    return np.asarray(j(images, prompts, truth if name in TRUTH_JUDGES else None), dtype=float)


def pair_scores(cfg, judges, pairs, perspective) -> Dict[str, tuple]:
    """{judge: (scores of the chosen images, scores of the rejected ones)}."""
    out = {name: (score(judges, name, pairs["chosen"], pairs["prompt"], pairs["chosen_truth"]),
                  score(judges, name, pairs["rejected"], pairs["prompt"], pairs["rejected_truth"]))
           for name in judges}
    unsafe = cfg.unsafe_colour if perspective == "safety" else None
    out["oracle"] = (ground_truth_scores(pairs["prompt"], pairs["chosen_truth"], unsafe, False),
                     ground_truth_scores(pairs["prompt"], pairs["rejected_truth"], unsafe, perspective == "quality"))
    return out


def normalised(c: np.ndarray, r: np.ndarray):
    both = method.minmax(np.concatenate([c, r]))
    return both[: len(c)], both[len(c):]


def t2i_sampler(cfg, t2i, seed: int):
    """sample(prompts, "high" | "low"): the shared T2I model (root stage train_t2i) at its evaluation NFE and CFG
    scale (chosen) or at `low_nfe` without CFG (rejected), from the same per-sample noise (seeded by `seed`)."""
    from common.sampling import SamplingSpec
    from common.t2i import generate_images

    model, schedule = t2i
    e = cfg.t2i.eval
    specs = {"high": dict(nfe=e.nfe, guidance_scale=e.guidance_scale), "low": dict(nfe=cfg.low_nfe, guidance_scale=1.0)}

    def sample(prompts, which):
        spec = SamplingSpec(num_samples=len(prompts), method=e.method, seed=seed, **specs[which])
        return generate_images(model, schedule, prompts, spec)

    return sample


def evaluate_unit(st: EvalStage, judges, seed: int, banks, t2i) -> None:
    cfg = st.cfg
    pairs = preference_set(banks, cfg.n_per_kind, seed, cfg.unsafe_colour, cfg.jpeg_quality)
    add_t2i_pairs(pairs, t2i_sampler(cfg, t2i, seed), cfg.n_t2i, seed + 20_000)
    pairs = stack(pairs)
    acc0 = {}
    for persp in PERSPECTIVES:
        kinds = np.asarray(pairs[persp]["kind"])
        for name, (c, r) in pair_scores(cfg, judges, pairs[persp], persp).items():
            c, r = normalised(c, r)
            gaps = []
            for thr in cfg.thresholds:
                a = method.pair_accuracies(c, r, thr)
                st.add(table="table", seed=seed, judge=name, perspective=persp, thr=thr, **a)
                gaps.append(a["acc_wo_tie"] - a["acc_w_tie"])
            acc0[(name, persp)] = method.pair_accuracies(c, r, 0.0)["acc_w_tie"]
            for kind in PERSPECTIVES[persp]:
                m = kinds == kind
                st.add(table="kind", seed=seed, judge=name, perspective=persp, kind=kind,
                       **method.pair_accuracies(c[m], r[m], 0.0))
            if np.isfinite(gaps).all():  # acc w/o tie is undefined where every prediction is a tie (minilm, quality)
                st.add(comparison="tie_order", judge=name, perspective=persp, seed=seed, min_gap=float(np.min(gaps)))
            if name == "clip" and persp == "alignment":
                st.add(comparison="tie_gap", seed=seed, growth=gaps[-1] - gaps[0])
    for arm, name in (("baseline", "clip"), ("method", "reward_model")):
        st.add(comparison="rm_vs_clip", arm=arm, judge=name, seed=seed, acc_w_tie=acc0[(name, "alignment")])
    st.add(comparison="oracle_calibration", seed=seed, min_acc=min(acc0[("oracle", p)] for p in PERSPECTIVES))
    bias = {name: [] for name in [*judges, "oracle"]}
    for g in bias_groups(banks, cfg.bias_groups, seed + 10_000):
        prompts = [g["prompt"]] * len(g["images"])
        for name in judges:
            bias[name].append(score(judges, name, g["images"], prompts, g["truth"]))
        bias["oracle"].append(ground_truth_scores(prompts, g["truth"], None, False))
    for name, groups in bias.items():
        norm = method.bias_metrics(groups, cfg.bias_threshold, normalise=True)
        raw = {f"{k}_raw": v for k, v in method.bias_metrics(groups, cfg.bias_threshold, normalise=False).items()}
        st.add(table="bias", seed=seed, judge=name, **norm, **raw)
        if name in ("clip", "oracle[pixels]"):
            st.add(comparison="bias_fairness", arm="baseline" if name == "clip" else "method", judge=name, seed=seed,
                   **norm)
    if seed == cfg.seeds[0]:
        save_examples(st, pairs, bias_groups(banks, cfg.grid, seed + 10_000))


def save_examples(st: EvalStage, pairs, groups) -> None:
    """The first `grid` pairs of each perspective and bias groups, for the report's figure."""
    n = st.cfg.grid
    arrays = {}
    for persp, p in pairs.items():
        idx = [i for k in PERSPECTIVES[persp] for i in np.flatnonzero(np.asarray(p["kind"]) == k)[:max(1, n // len(
            PERSPECTIVES[persp]))]]
        arrays[f"{persp}_chosen"] = p["chosen"][idx].numpy()
        arrays[f"{persp}_rejected"] = p["rejected"][idx].numpy()
        arrays[f"{persp}_prompt"] = np.array([p["prompt"][i] for i in idx])
        arrays[f"{persp}_kind"] = np.array([p["kind"][i] for i in idx])
    arrays["bias_images"] = np.stack([g["images"].numpy() for g in groups])
    arrays["bias_prompt"] = np.array([g["prompt"] for g in groups])
    st.write_arrays("examples.npz", **arrays)


def main(argv=None):
    st = EvalStage.load(MJBenchConfig, PAPER, argv)
    refuse_full(st.cfg)
    training, heldout = digit_banks(st.cfg)
    fixed, clip_tok = load_judges(st.cfg)
    t2i = load_t2i(resolve(st.cfg, st.cfg.paths.models, "t2i"), st.cfg)
    for seed in st.cfg.seeds:
        judges = unit_judges(st.cfg, fixed, clip_tok, training, seed)
        evaluate_unit(st, judges, seed, heldout, t2i)
    st.write(judges=[*judges, "oracle"], perspectives=list(PERSPECTIVES), thresholds=list(st.cfg.thresholds))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
