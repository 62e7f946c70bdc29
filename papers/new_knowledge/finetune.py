"""Stage `finetune`: the Unknown-share study (paper Sec. 3-4).

For each seed and each share X of Unknown examples: a fine-tuning set D of fixed size with X% Unknown
(sampled per relation from the SliCK-categorised train questions), fine-tuned from the base LM for
`study.epochs` epochs (CONVERGENCE) with the shared training loop; after every epoch, greedy exact
match on D (which examples are fitted, per category), on the dev set (EARLY_STOP) and on the test set.
Then the claims' rows: fitting speed of Known vs Unknown, test accuracy vs X at CONVERGENCE and
EARLY_STOP, and the linear model of Eq. 1 per seed.
Writes reports/new_knowledge/results.json; per-run curves are kept under runs/new_knowledge/finetune
so an interrupted stage resumes run by run.
"""

import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

import common.training
from common.config import budget_config, load_config, resolve, to_dict
from common.lm import score_answers, stop_ids
from common.seeding import seed_everything
from common.stats import mean_ci
from common.tracking import log_training
from common.training import fingerprint, train
from papers.new_knowledge import method
from papers.new_knowledge.config import NewKnowledgeConfig
from papers.new_knowledge.inputs import (
    answer_ids,
    finetune_target,
    load_base,
    load_questions,
    prompt_ids,
    zero_shot_prompt,
)
from papers.new_knowledge.method import CATEGORIES, KNOWN, UNKNOWN, early_stop_epoch, fit_linear_model, is_known

PAPER = "new_knowledge"


def sft_tensors(tok, rows):
    """(input ids, labels, attention mask) [N, L]: prompt + answer + end of line, loss on the answer part only."""
    seqs, labels = [], []
    for r in rows:
        p, a = prompt_ids(tok, zero_shot_prompt(r["question"])), finetune_target(tok, r["answer"])
        seqs.append(p + a)
        labels.append([-100] * len(p) + a)
    L = max(len(s) for s in seqs)
    ids = torch.full((len(rows), L), tok.pad_token_id, dtype=torch.long)
    lab = torch.full((len(rows), L), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for i, (s, target) in enumerate(zip(seqs, labels)):
        ids[i, : len(s)], lab[i, : len(target)], mask[i, : len(s)] = torch.tensor(s), torch.tensor(target), 1
    return ids, lab, mask


def sft_loss(model, ids, labels, mask, generator=None):
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


class Evaluator:
    """Greedy exact match (zero-shot format) on the training set D, the dev set and the test set."""

    def __init__(self, tok, sets, batch_size):
        self.tok, self.names, self.bs = tok, list(sets), batch_size
        rows = [r for n in self.names for r in sets[n]]
        self.sizes = [len(sets[n]) for n in self.names]
        self.prompts = [prompt_ids(tok, zero_shot_prompt(r["question"])) for r in rows]
        self.answers = [answer_ids(tok, r["answer"]) for r in rows]

    @torch.no_grad()
    def __call__(self, model):
        was_training = model.training
        model.eval()
        ok, _ = score_answers(model, self.prompts, self.answers, stop_ids(self.tok), self.tok.pad_token_id,
                              batch_size=self.bs)
        model.train(was_training)
        return dict(zip(self.names, torch.split(ok, self.sizes)))


def epoch_record(epoch, hits, train_rows, test_rows):
    """Accuracies (%) of one evaluation: per category on D, dev, test (overall and per category)."""
    rec = {"epoch": epoch, "dev_acc": 100 * float(hits["dev"].float().mean()),
           "test_acc": 100 * float(hits["test"].float().mean())}
    tr = hits["train"].tolist()
    for cat in CATEGORIES + (KNOWN,):
        sel = [h for h, r in zip(tr, train_rows) if (is_known(r["category"]) if cat == KNOWN else r["category"] == cat)]
        rec[f"train_acc[{cat}]"] = 100 * float(np.mean(sel)) if sel else None
        rec[f"fitted[{cat}]"] = int(sum(sel))
    te = hits["test"].tolist()
    for cat in CATEGORIES:
        sel = [h for h, r in zip(te, test_rows) if r["category"] == cat]
        rec[f"test_acc[{cat}]"] = 100 * float(np.mean(sel)) if sel else None
    return rec


def finetune_run(cfg, tok, train_rows, dev_rows, test_rows, seed, run_dir: Path, identity: dict):
    """Fine-tune the base LM on `train_rows`; the curve of per-epoch evaluations (epoch 0 = before)."""
    st = cfg.study
    fp = fingerprint(identity, [Path(__file__), Path(method.__file__), Path(common.training.__file__)])
    done = run_dir / "curve.json"
    if done.is_file() and json.loads(done.read_text()).get("fingerprint") == fp:
        return json.loads(done.read_text())["curve"]
    # a run is the unit of resumption: its per-epoch evaluations are not in the training checkpoints
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    seed_everything(seed)
    model, _, _ = load_base(cfg, dropout=st.dropout)
    evaluate = Evaluator(tok, {"train": train_rows, "dev": dev_rows, "test": test_rows}, st.eval_batch_size)
    curve = [epoch_record(0, evaluate(model), train_rows, test_rows)]
    spe = math.ceil(len(train_rows) / st.batch_size)  # optimizer steps per epoch (one pass over D)
    steps = spe * st.epochs
    tcfg = budget_config(steps, warmup_steps=0, batch_size=st.batch_size, lr=st.lr, lr_schedule=st.lr_schedule,
                         weight_decay=st.weight_decay, grad_clip=st.grad_clip, checkpoint_every=steps,
                         keep_checkpoints=1, seed=seed, log_every=spe)

    def after_epoch(step, m):
        curve.append(epoch_record(step // spe, evaluate(m), train_rows, test_rows))

    res = train(model, sft_loss, sft_tensors(tok, train_rows), tcfg, run_dir / "checkpoints", desc=run_dir.name,
                use_ema=False, ema_snapshots=[spe * e for e in range(1, st.epochs + 1)], snapshot_fn=after_epoch,
                run_fingerprint=fp)
    for rec, h in zip(curve[1:], res.history):
        rec["train_loss"] = h["loss"]
    log_training(cfg, PAPER, "finetune", res, {k: v for k, v in identity.items() if k != "examples"}, seed=seed,
                 settings={"share": identity["share"]}, curve=curve, curve_step=lambda c: c["epoch"] * spe,
                 metrics=curve[-1])
    done.write_text(json.dumps({"fingerprint": fp, "curve": curve}))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # the curve is the run's result
    return curve


def slope(xs, ys) -> float:
    """Least-squares slope of ys on xs."""
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def claim_rows(runs, st):
    """Per-seed quantities the claims test (claims.yaml)."""
    rows = []
    for seed in st.seeds:
        mine = sorted([r for r in runs if r["seed"] == seed], key=lambda r: r["share"])
        # 1. fitting speed: mean training accuracy over epochs 1..E, Known vs Unknown examples of one variant
        v = next(r for r in mine if r["share"] == st.fit_speed_share)
        for arm, cat in (("baseline", KNOWN), ("method", UNKNOWN)):
            accs = [c[f"train_acc[{cat}]"] for c in v["curve"][1:] if c[f"train_acc[{cat}]"] is not None]
            rows.append({"stage": "fit_speed", "seed": seed, "arm": arm, "category": cat,
                         "mean_train_acc": float(np.mean(accs)) if accs else float("nan")})
        # 2./3. test accuracy vs the Unknown share, at CONVERGENCE (baseline) and EARLY_STOP (method)
        shares = [r["n_unknown"] / r["size"] for r in mine]  # the realised share (per-relation rounding)
        for arm, key in (("baseline", "test_acc_convergence"), ("method", "test_acc_early_stop")):
            rows.append({"stage": "slope", "seed": seed, "arm": arm, "point": key,
                         "slope": slope(shares, [r[key] for r in mine])})
        # 4./5. Eq. 1 on one row per epoch per variant
        pts = [(c["fitted[Known]"] / r["size"], c["fitted[Unknown]"] / r["size"], c["test_acc"])
               for r in mine for c in r["curve"][1:]]
        fit = fit_linear_model(*zip(*pts))
        rows.append({"stage": "linear_model", "seed": seed, "arm": "method", **fit})
        rows.append({"stage": "linear_model", "seed": seed, "arm": "baseline", "beta_kn": 0.0})
    return rows


def main(argv=None):
    cfg = load_config(NewKnowledgeConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    st = cfg.study
    t0 = time.time()
    out = resolve(cfg, cfg.paths.reports, PAPER)
    slick = json.loads((out / "slick.json").read_text())
    q = {r["id"]: r for r in slick["rows"]}
    train_pool = [r for r in slick["rows"] if r["split"] == "train"]
    test_rows = [r for r in slick["rows"] if r["split"] == "test"]
    dev_rows = [{"id": r["id"], "question": r["question"], "answer": r["object"]} for r in load_questions(cfg)["dev"]]
    _, tok, _ = load_base(cfg)
    d = to_dict(cfg)
    base_identity = {"study": d["study"], "base_lm": cfg.base_lm, "slick": d["slick"], "profile": cfg.profile,
                     "slick_rows": fingerprint({"c": [(r["id"], r["category"]) for r in slick["rows"]]})}

    runs = []
    for seed in st.seeds:
        variants, sizes = method.unknown_share_variants({r["id"]: r["category"] for r in train_pool},
                                                        {r["id"]: r["relation"] for r in train_pool},
                                                        st.unknown_shares, seed, st.cap_per_relation)
        for share in st.unknown_shares:
            rows = [q[i] for i in variants[share]]
            if not rows:
                raise ValueError("no relation has both Known and Unknown train questions: the study needs both "
                                 f"(SliCK counts: {slick['counts']})")
            tag = f"unk{int(round(100 * share)):03d}_seed{seed}"
            run_dir = resolve(cfg, cfg.paths.runs, PAPER, "finetune", tag)
            run_dir.mkdir(parents=True, exist_ok=True)
            curve = finetune_run(cfg, tok, rows, dev_rows, test_rows, seed, run_dir,
                                 {**base_identity, "seed": seed, "share": share, "examples": sorted(variants[share])})
            es = early_stop_epoch([c["dev_acc"] for c in curve[1:]], [c["epoch"] for c in curve[1:]])
            runs.append({"share": share, "seed": seed, "size": len(rows), "per_relation": sizes,
                         "n_unknown": sum(r["category"] == UNKNOWN for r in rows),
                         "composition": {c: sum(r["category"] == c for r in rows) for c in CATEGORIES},
                         "early_stop_epoch": es, "convergence_epoch": curve[-1]["epoch"],
                         "test_acc_early_stop": curve[es]["test_acc"], "test_acc_convergence": curve[-1]["test_acc"],
                         "train_acc_convergence": 100 * sum(curve[-1][f"fitted[{c}]"] for c in CATEGORIES) / len(rows),
                         "curve": curve})
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)

    rows = claim_rows(runs, st)
    pooled = fit_linear_model(*zip(*[(c["fitted[Known]"] / r["size"], c["fitted[Unknown]"] / r["size"], c["test_acc"])
                                     for r in runs for c in r["curve"][1:]]))
    summary = {}
    for share in st.unknown_shares:
        for key in ("test_acc_early_stop", "test_acc_convergence"):
            m, lo, hi = mean_ci([r[key] for r in runs if r["share"] == share])
            summary[f"{key}.unk{int(round(100 * share))}"] = m
    results = {"runs": runs, "rows": rows, "linear_model_pooled": pooled, "summary": summary,
               "dev_size": len(dev_rows), "test_size": len(test_rows), "finetune_seconds": time.time() - t0}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({"pooled_linear_model": pooled, "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
