"""Stage `train`: three students per training seed, each initialised from the shared teacher and distilled on the
train split of the teacher pairs (common/teacher_pairs.py) with the same budget, data order and random draws:

  backward_srl   backward distillation + shifted reconstruction loss (Imagine Flash)
  forward_srl    forward-process inputs + SRL               (baseline of claim "backward beats forward")
  backward_mse   backward distillation + x0-MSE to the pairs (baseline of claim "SRL beats x0-MSE")

Each run resumes from runs/imagine_flash/<arm>-seed<s>/checkpoints after an interruption, keeps the EMA snapshots
of eval.curve_steps there (FID vs training step) and saves the final EMA student to models/imagine_flash/<arm>-seed<s>.
Writes reports/imagine_flash/train.json (time, losses).
"""

import sys
from dataclasses import replace
from pathlib import Path

import torch

from common.arms import train_arms
from common.config import load_config, resolve, to_dict
from common.dit import train_snapshots
from common.models import count_parameters, save_diffusion_model
from common.seeding import seed_everything
from common.teacher_pairs import Teacher, load_pairs, load_teacher
from papers.imagine_flash import method
from papers.imagine_flash.config import ImagineFlashConfig

PAPER = "imagine_flash"
STAGE = f"papers/{PAPER}/dvc.yaml:train"
ARMS = {"backward_srl": ("backward", "srl"), "forward_srl": ("forward", "srl"), "backward_mse": ("backward", "x0_mse")}


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


def make_loss(teacher: Teacher, pairs, arm: str, distill):
    """loss_fn(model, x_T, index, generator) of common.training for `arm`: the pair's label and teacher sample are
    looked up by index (the trainer batches two tensors: the noise and the pair index)."""
    inputs, loss = ARMS[arm]

    def loss_fn(model, x_T, index, gen):
        student = Teacher(model, teacher.schedule, teacher.num_classes)
        idx = index.cpu()
        return method.distillation_loss(student, teacher, x_T, pairs.label[idx].to(x_T.device),
                                        pairs.sample[idx].to(x_T.device), gen, inputs, loss,
                                        distill.step_counts, distill.srl_shift)

    return loss_fn


def train_arm(cfg, teacher: Teacher, pairs, arm: str, seed: int) -> dict:
    """One student: seeded, initialised from the teacher, trained for distill.train.steps; saves its EMA weights."""
    seed_everything(seed)
    student = method.init_student(teacher)
    train_cfg = replace(cfg.distill.train, seed=seed)
    identity = {"arm": arm, "distill": {**to_dict(cfg.distill), "train": to_dict(train_cfg)},
                "teacher_pairs": to_dict(cfg.teacher_pairs)}
    name = run_name(arm, seed)
    res, _ = train_snapshots(student.unet, make_loss(teacher, pairs, arm, cfg.distill), pairs.noise,
                             torch.arange(len(pairs)), train_cfg, resolve(cfg, cfg.paths.runs, PAPER, name), identity,
                             [Path(__file__), Path(method.__file__)], snapshots=cfg.eval.curve_steps,
                             desc=f"{PAPER} {name}")
    params = count_parameters(res.model)
    if res.is_main_process:
        save_diffusion_model(res.model, teacher.schedule.diffusers_config, resolve(cfg, cfg.paths.models, PAPER, name),
                             {"params": params, "arm": arm, "train_seed": seed, "step": res.steps})
    return {"arm": arm, "train_seed": seed, "steps": res.steps, "seconds": res.train_seconds, "params": params,
            "resumed_from": res.resumed_from_step, "final_loss": res.history[-1]["loss"],
            "history": [{"step": h["step"], "loss": h["loss"]} for h in res.history]}


def main(argv=None):
    cfg = load_config(ImagineFlashConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    teacher = load_teacher(cfg)
    pairs = load_pairs(cfg, "train")
    train_arms(cfg, PAPER, list(ARMS), lambda arm, seed: train_arm(cfg, teacher, pairs, arm, seed),
               lambda arm: {"distill": to_dict(cfg.distill)})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
