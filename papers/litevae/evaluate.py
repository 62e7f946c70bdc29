"""Stage `evaluate`: every trained autoencoder on the 1,024 held-out patches (right quarter of each photo).

Per arm and training seed, the reconstruction D(mean of q(z|x)) of every held-out patch, clipped to [-1, 1]:
  psnr, ssim            common.recon_metrics (skimage), mean over the images
  lpips[patches-cnn]    the loss's own LPIPS (common.patch_trunks.patch_lpips): the reconstruction target, not an
                        independent judge; rfid[patches-cnn] uses a second, separately trained trunk
  rfid[patches-cnn]     Frechet distance of the reconstructions to the held-out patches
  norm_ratio            decoder feature statistic (claim c): per block (mid, up0..), the per-channel L2 norms over
                        all held-out inputs, max / mean; the row holds the mean over blocks (`norm_ratio_<block>`
                        each)
Rows: `recon` (arm = the arm's name), and the claims' pairs with arm = baseline / method:
  lite_vs_vae   vae (baseline) vs litevae (method)             claim (a)
  smc           litevae (baseline) vs litevae_smc (method)     claim (c)
Writes reports/litevae/results.json and reconstructions.npz (inputs + each arm's first `eval.grid`
reconstructions, every seed; the channel norms of every block of litevae and litevae_smc for the histograms).
"""

import numpy as np
import torch

from common.data import to_model_range, to_uint8
from common.eval_stage import EvalStage
from common.image_patches import load_patches
from common.patch_trunks import RFID_KEY, patch_lpips, rfid
from common.recon_metrics import recon_metrics, summarise
from papers.litevae import method
from papers.litevae.config import LiteVAEConfig
from papers.litevae.train import PAPER, load_model

PAIRS = {"lite_vs_vae": ("vae", "litevae"), "smc": ("litevae", "litevae_smc")}


@torch.no_grad()
def reconstruct(ae, x: torch.Tensor, batch: int):
    """(reconstructions clipped to [-1, 1], {block: per-channel L2 norm over all inputs} of the decoder)."""
    outs, sq = [], {}
    for i in range(0, len(x), batch):
        z = ae.encode(x[i:i + batch]).latent_dist.mean
        outs.append(ae.decode(z).sample.clamp(-1, 1))
        for k, v in method.channel_norms(ae.decoder, ae.post_quant_conv(z)).items():
            sq[k] = sq.get(k, 0) + v.pow(2)
    return torch.cat(outs), {k: v.sqrt() for k, v in sq.items()}


def scores(cfg, dist, rec: torch.Tensor, x: torch.Tensor, norms: dict) -> dict:
    out = summarise(recon_metrics(rec, x, (-1.0, 1.0), dist))
    out[RFID_KEY] = rfid(cfg, rec, x, (-1.0, 1.0))
    ratios = {f"norm_ratio_{k}": method.norm_ratio(v) for k, v in norms.items()}
    return {**out, "norm_ratio": float(np.mean(list(ratios.values()))), **ratios}


def main(argv=None):
    stage = EvalStage.load(LiteVAEConfig, PAPER, argv)
    cfg, ev = stage.cfg, stage.cfg.eval
    x = to_model_range(load_patches(cfg, "heldout").images)
    dist = patch_lpips(cfg)
    arrays = {"inputs": to_uint8(x[:ev.grid]).numpy()}
    for seed in cfg.train_seeds:
        per_arm = {}
        for arm in cfg.arms:
            rec, norms = reconstruct(load_model(cfg, arm, seed), x, ev.batch_size)
            per_arm[arm] = scores(cfg, dist, rec, x, norms)
            stage.add(comparison="recon", arm=arm, train_seed=seed, **per_arm[arm])
            arrays[f"{arm}_seed{seed}"] = to_uint8(rec[:ev.grid]).numpy()
            for k, v in norms.items():
                arrays[f"norms_{arm}_seed{seed}_{k}"] = v.float().numpy()
        for comp, (base, meth) in PAIRS.items():
            if base in per_arm and meth in per_arm:
                stage.add(comparison=comp, arm="baseline", model=base, train_seed=seed, **per_arm[base])
                stage.add(comparison=comp, arm="method", model=meth, train_seed=seed, **per_arm[meth])
    stage.write_arrays("reconstructions.npz", **arrays)
    stage.write(lpips=dist.name, rfid=RFID_KEY, num_heldout=len(x), image_size=cfg.image_size,
                latent="mean of q(z|x)", pairs={k: list(v) for k, v in PAIRS.items()})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
