"""Stage `benchmark`: the cost claims, timed in one run with interleaved rounds (the replication unit).

(d) One regression-loss step on a student's latent output, forward + backward to the latent (batch
    benchmark.batch_size): E-LatentLPIPS and plain LatentLPIPS on the latents, against the pixel route the paper
    avoids: decode with the autoencoder, then pixel LPIPS against the target image (the project page: "LPIPS 117 ms
    vs E-LatentLPIPS 12.1 ms" per iteration on an A100). Rows `loss_cost` (arm baseline = decode + LPIPS, method =
    E-LatentLPIPS) and `loss_cost_plain` (method = plain LatentLPIPS).
(e) Sampling: one student call G(z, c) against the teacher's DDIM sampler at the pairs' NFE on the same noise batch
    (benchmark.sample_batch). Rows `sampling_cost` (baseline = teacher, method = student) with their NFE.
In every round each contender runs `repeats` timed calls after `warmup` untimed ones, in a rotated order; the
median call is the round's value. Writes reports/diffusion2gan/benchmark.json.
"""

import statistics
import time

import torch

from common.autoencoder import decode, encode, load_autoencoder
from common.devices import default_device
from common.eval_stage import EvalStage
from common.perceptual import latent_lpips, pixel_lpips
from common.sampling import SamplingSpec, generate_samples
from common.teacher_pairs import load_pairs, load_teacher, pairs_meta
from papers.diffusion2gan.config import Diffusion2GANConfig
from papers.diffusion2gan.train import PAPER, build_student


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, warmup: int, device) -> float:
    """Median seconds of `repeats` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def loss_steps(cfg, device) -> dict:
    """{name: one loss step fwd + bwd to the student's latent} for (d)."""
    ae, meta = load_autoencoder(cfg)
    ae, sf, b = ae.to(device), meta["scaling_factor"], cfg.benchmark.batch_size
    pairs = load_pairs(cfg, "train")
    x_t = pairs.sample[:b].to(device)
    with torch.no_grad():
        z_t = encode(ae, x_t, sf)
    z_s = torch.randn(z_t.shape, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    elat, plain, pix = (m.to(device) for m in (latent_lpips(cfg), latent_lpips(cfg, ensemble=False, l1=False),
                                                pixel_lpips(cfg)))
    gen = torch.Generator().manual_seed(0)

    def step(loss_fn):
        def run():
            z_s.grad = None
            loss_fn().mean().backward()
        return run

    return {"e_latent_lpips": step(lambda: elat(z_s, z_t, gen)), "latent_lpips": step(lambda: plain(z_s, z_t)),
            "decode_lpips": step(lambda: pix(decode(ae, z_s, sf), x_t))}, {"elat": elat.name, "pixel": pix.name}


def samplers(cfg, device) -> tuple:
    """{name: fn} for (e): the teacher's DDIM at the pairs' NFE and one student call, on the same noise batch."""
    teacher, meta = load_teacher(cfg), pairs_meta(cfg)
    unet = teacher.unet.to(device)
    student = build_student(cfg, unet).to(device).eval()
    n, held = cfg.benchmark.sample_batch, load_pairs(cfg, "heldout")
    z, c = held.noise[:n].to(device), held.label[:n].to(device)
    spec = SamplingSpec(n, meta["nfe"], "ddim", eta=0.0, guidance_scale=meta["guidance_scale"], seed=0,
                        clip_x0=bool(meta.get("clip_x0", True)))
    shape, k = tuple(z.shape[1:]), cfg.base_model.unet.num_classes

    @torch.no_grad()
    def teacher_run():
        generate_samples(teacher.model_fn, teacher.schedule, spec, shape, k, batch_size=n)

    @torch.no_grad()
    def student_run():
        student(z, c)

    return {"teacher": teacher_run, "student": student_run}, meta["nfe"]


def interleaved(stage, contenders: dict, roles: dict, comparison_of: dict, bm, device, extra: dict):
    """`rounds` rounds, each contender timed once per round in a rotated order; rows per (comparison, role)."""
    names = list(contenders)
    for r in range(bm.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        secs = {name: timed(contenders[name], bm.repeats, bm.warmup if r == 0 else 0, device) for name in order}
        for name, s in secs.items():
            for comp, role in comparison_of[name]:
                stage.add(comparison=comp, arm=role, contender=name, round=r, seconds=s, **extra.get(name, {}))
    return {name: statistics.median(row["seconds"] for row in stage.rows if row.get("contender") == name)
            for name in names}


def main(argv=None):
    stage = EvalStage.load(Diffusion2GANConfig, PAPER, argv)
    cfg, device, bm = stage.cfg, default_device(), stage.cfg.benchmark
    torch.manual_seed(cfg.seed)
    steps, names = loss_steps(cfg, device)
    loss_roles = {"decode_lpips": [("loss_cost", "baseline"), ("loss_cost_plain", "baseline")],
                  "e_latent_lpips": [("loss_cost", "method")], "latent_lpips": [("loss_cost_plain", "method")]}
    loss_med = interleaved(stage, steps, None, loss_roles, bm, device, {})
    fns, nfe = samplers(cfg, device)
    sample_roles = {"teacher": [("sampling_cost", "baseline")], "student": [("sampling_cost", "method")]}
    sample_med = interleaved(stage, fns, None, sample_roles, bm, device,
                             {"teacher": {"nfe": nfe}, "student": {"nfe": 1}})
    stage.write("benchmark.json", device=str(device), threads=torch.get_num_threads(), distance_names=names,
                loss_median_seconds=loss_med, sampling_median_seconds=sample_med,
                loss_speedup=loss_med["decode_lpips"] / loss_med["e_latent_lpips"],
                loss_speedup_plain=loss_med["decode_lpips"] / loss_med["latent_lpips"],
                sampling_speedup=sample_med["teacher"] / sample_med["student"], teacher_nfe=nfe, student_nfe=1)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
