"""Stage `evaluate`: FID of MaskDiT and of the shared DiT baseline at equal training cost, per training seed.

Every model is sampled with the same per-sample seeds and labels (EDM DPM-Solver++(2M), `eval.num_steps`
network calls per sample and branch) and scored in the metric backbone's feature space. Models per training
seed s (the replication unit; sampling seeds are averaged inside it):
  DiT at cost_step and at each of eval.dit_steps (models/dit, root stage train_dit), MaskDiT after unmask tuning,
  MaskDiT before it, and with / without the MAE term at the ablation step. Rows name the claim comparison they serve
  (`comparison`: equal_cost | mae | unmask | cost_curve) with `arm` baseline / method.
Writes reports/maskdit/results.json and sample grids.
"""

from common.config import resolve
from common.data import load_split, to_uint8
from common.devices import default_device
from common.dit import dit_net, load_dit
from common.edm import EDM, generate_all, model_calls
from common.eval_stage import EvalStage
from common.evaluation import SampleScorer
from common.experiment import real_floor
from common.report import class_grid
from common.stages import train_dit
from papers.maskdit import method
from papers.maskdit.config import MaskDiTConfig
from papers.maskdit.train import PAPER, check_cost_step, load

# (comparison, arm, model key, guidance scales): which sample sets serve which claim
COMPARISONS = (("equal_cost", "baseline", "dit", "all"), ("equal_cost", "method", "maskdit", "all"),
               ("mae", "baseline", "nomae_ablation", "none"), ("mae", "method", "mae_ablation", "none"),
               ("unmask", "baseline", "maskdit_masked", "none"), ("unmask", "method", "maskdit", "none"))
MASKDIT = {"maskdit": ("mae", "tuned"), "maskdit_masked": ("mae", "masked"), "mae_ablation": ("mae", "ablation"),
           "nomae_ablation": ("nomae", "ablation")}


def models_of_seed(cfg, seed: int, channels: int, device) -> dict:
    """{key: (network function F, DiT step or None)} of one training seed's models."""
    out = {}
    for step in sorted({cfg.cost_step, *cfg.eval.dit_steps}):
        dit, _ = load_dit(train_dit.model_dir(cfg, seed, step))
        out["dit" if step == cfg.cost_step else f"dit@{step}"] = (dit_net(dit.to(device)), step)
    for key, (arm, phase) in MASKDIT.items():
        out[key] = (method.maskdit_net(load(cfg, arm, seed, phase, channels).to(device)), None)
    return out


def main(argv=None):
    stage = EvalStage.load(MaskDiTConfig, PAPER, argv)
    cfg, ev = stage.cfg, stage.cfg.eval
    check_cost_step(cfg)
    device = default_device()
    edm = EDM.from_config(cfg.dit.edm)
    data_dir = resolve(cfg, cfg.paths.data, "prepared")
    scorer = SampleScorer(data_dir, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name, device=device)
    channels = load_split(data_dir, "heldout")[0].shape[1]
    shape, k = (channels, cfg.data.resolution, cfg.data.resolution), cfg.dit.net.num_classes
    calls = 0
    for seed in cfg.dit.train_seeds:
        nets = models_of_seed(cfg, seed, channels, device)
        for key, (net, dit_step) in nets.items():
            scales = ev.guidance_scales if key in ("dit", "maskdit") else ev.guidance_scales[:1]
            for w in scales:
                for s in ev.seeds:
                    img, lab = generate_all(net, edm, shape, ev.num_samples, k, ev.num_steps, w, seed=s,
                                            device=device)
                    calls += model_calls(ev.num_samples, ev.num_steps, w)
                    score = scorer.score(to_uint8(img), lab)
                    for row in rows_for(key, w, dit_step, cfg):
                        stage.add(**row, guidance=w, train_seed=seed, sample_seed=s, seed=f"{seed}/{s}", **score)
                    if seed == cfg.dit.train_seeds[0] and s == ev.seeds[0]:
                        stage.save_grid(class_grid(to_uint8(img), lab), f"{key.replace('@', '_step')}_w{w:g}", n=None)
    stage.write(metric=scorer.key("fid"), floors=real_floor(scorer, data_dir, ev.num_samples, k, cfg.seed),
                floor_samples=ev.num_samples, backbone=scorer.backbone, num_reference=scorer.num_reference,
                model_calls=calls, sampler=f"EDM DPM-Solver++(2M), {ev.num_steps} steps")


def rows_for(key: str, w: float, dit_step, cfg):
    """The result rows one sample set contributes: one per comparison it serves, plus the cost curve."""
    rows = [{"comparison": c, "arm": arm, "model": key} for c, arm, m, scales in COMPARISONS
            if m == key and (scales == "all" or w == 1.0)]
    if w == 1.0 and key.startswith("dit"):
        rows.append({"comparison": "cost_curve", "arm": "dit", "model": key, "dit_step": dit_step})
    return rows


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
