"""Perceptual distances with the `lpips` package's machinery on trunks trained here (augmentation: common/augment.py).

LPIPS structure (Zhang et al. 2018; `lpips.LPIPS.forward`): for taps f_l of a frozen trunk,
    d(x0, x1) = sum_l mean_hw w_l . (n(f_l(x0)) - n(f_l(x1)))^2,   n(f) = f / ||f||_channels  (lpips.normalize_tensor)
with 1x1 heads w_l (lpips.NetLinLayer) and lpips.spatial_average. LatentLPIPS (Kang et al., ECCV 2024) runs the
same structure on an autoencoder's latents with a trunk trained on latents; E-LatentLPIPS applies one random
differentiable augmentation per sample, the same to both inputs (`common.augment.DiffAugment`), and adds
mean|x0 - x1| computed before the augmentation (the official `add_l1_loss=True`).

Backbones. The official weights (LPIPS's ImageNet AlexNet/VGG calibrated on BAPPS 2AFC judgements; the latent
VGG16-BN trained on ImageNet latents) cannot be downloaded here, and no human 2AFC data exists offline, so the
root stage `train_perceptual` trains two small trunks on the *training* split, class-supervised (digit labels,
cross-entropy), as the official latent VGG was trained by classification:
  - `lpips[digits-cnn]`: a pixel-space CNN on MNIST 16x16 images;
  - `latent-lpips[digits-ae]` / `e-latent-lpips[digits-ae]`: a CNN on the latents of the shared AutoencoderKL
    (root stage train_autoencoder), its first pools removed as the official latent VGG's are.
The linear heads are unit weights (w_l = 1, frozen: no calibration data; a trainable unclamped head is the
official repo's "negative loss" issue). Where torchvision's ImageNet AlexNet / VGG16 weights already sit in the
user's torch hub cache (`hub_weights` looks, never downloads), `perceptual.pixel_backbone: auto` uses the
standard `lpips.LPIPS(net='alex')` instead, named `lpips[alex]`.

IMPORTANT: neither trunk is the metric backbone models/classifier, nor shares its weights or initialisation. The
papers train students against these losses and report FID in the classifier's feature space; a loss optimised
in the evaluation's own feature space would bias every FID. Both trunks are still class-supervised on the same
digits, so some alignment with the evaluation features remains; the papers' MSE arms are the control.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional, Sequence, Tuple

import torch

from .augment import PRESETS, DiffAugment  # noqa: F401  (PRESETS re-exported with the distance)


# --------------------------------------------------------------------------- trunks
class TapNet(torch.nn.Module):
    """A VGG-style trunk: slices of (conv 3x3, BatchNorm, ReLU) x convs, each ending in a 2x2 max-pool or an
    Identity (the official latent VGG16-BN removes its first three pools); the taps are the slices' outputs.
    `classify` (global average pool + linear) is the training head only; the distance never uses it."""

    def __init__(self, in_channels: int, channels: Sequence[int], convs: Sequence[int], pools: Sequence[bool],
                 num_classes: int = 10):
        super().__init__()
        if not len(channels) == len(convs) == len(pools):
            raise ValueError(f"TapNet: channels {list(channels)}, convs {list(convs)} and pools {list(pools)} "
                             "need one entry per slice")
        self.channels, slices, c = list(channels), [], in_channels
        for ch, n, pool in zip(channels, convs, pools):
            layers = []
            for _ in range(n):
                layers += [torch.nn.Conv2d(c, ch, 3, padding=1), torch.nn.BatchNorm2d(ch), torch.nn.ReLU()]
                c = ch
            layers.append(torch.nn.MaxPool2d(2, 2) if pool else torch.nn.Identity())
            slices.append(torch.nn.Sequential(*layers))
        self.slices = torch.nn.ModuleList(slices)
        self.head = torch.nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        taps = []
        for s in self.slices:
            x = s(x)
            taps.append(x)
        return taps

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(x)[-1].mean(dim=(2, 3)))


def latent_vgg16_bn(latent_channels: int, meta: bool = False) -> TapNet:
    """The official E-LatentLPIPS trunk's layout (VGG16-BN, first conv on the latent channels, first 3 pools
    removed): taps 64, 128, 256 at the latent's size, 512 at 1/2 and 512 at 1/4 (a 64^2 latent: 64^2, 64^2, 64^2,
    32^2, 16^2). For the full profile and the tap-shape check; nothing here trains it."""
    with torch.device("meta") if meta else nullcontext():
        return TapNet(latent_channels, [64, 128, 256, 512, 512], [2, 2, 3, 3, 3], [False, False, False, True, True],
                      num_classes=1000)


# --------------------------------------------------------------------------- the distance
class LPIPSDistance(torch.nn.Module):
    """d(x0, x1) per sample [N] with the LPIPS structure over `trunk`'s taps (see the module docstring); frozen.

    heads: None = unit weights (w_l = 1), or a list of lpips.NetLinLayer (calibrated heads, e.g. lpips.LPIPS's).
    preprocess: applied to both inputs first (lpips' ScalingLayer, a channel repeat for grey images).
    augment: a `DiffAugment` (E-LatentLPIPS) applied to both inputs with one draw per sample; `l1`: add
    mean|x0 - x1| computed before the augmentation (the official `add_l1_loss`).
    """

    def __init__(self, trunk: torch.nn.Module, channels: Sequence[int], name: str, heads=None, preprocess=None,
                 augment: Optional[DiffAugment] = None, l1: bool = False):
        import lpips

        super().__init__()
        self.trunk, self.name, self.augment, self.l1 = trunk, name, augment, l1
        self.preprocess = preprocess or torch.nn.Identity()
        if heads is None:
            heads = [lpips.NetLinLayer(c, use_dropout=False) for c in channels]
            for h in heads:
                torch.nn.init.ones_(h.model[-1].weight)
        self.heads = torch.nn.ModuleList(heads)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        """Always in eval mode: BatchNorm statistics and the heads stay fixed (a loss, never a trained module)."""
        return super().train(False)

    def layers(self, x0: torch.Tensor, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
               augment: bool = True) -> List[torch.Tensor]:
        """The per-layer terms mean_hw w_l . (n(f_l(x0)) - n(f_l(x1)))^2, each [N]."""
        import lpips

        if augment and self.augment is not None:
            x0, x1 = self.augment(x0, x1, generator)
        f0, f1 = self.trunk(self.preprocess(x0)), self.trunk(self.preprocess(x1))
        return [lpips.spatial_average(h((lpips.normalize_tensor(a) - lpips.normalize_tensor(b)) ** 2)).flatten()
                for h, a, b in zip(self.heads, f0, f1)]

    def forward(self, x0: torch.Tensor, x1: torch.Tensor, generator: Optional[torch.Generator] = None,
                augment: bool = True) -> torch.Tensor:
        d = torch.stack(self.layers(x0, x1, generator, augment)).sum(0)
        if self.l1:
            d = d + (x0 - x1).abs().mean(dim=(1, 2, 3))
        return d


class GreyToRGB(torch.nn.Module):
    """Grey images [N, 1, H, W] in [-1, 1] -> 3 channels, then lpips' ScalingLayer (ImageNet trunks)."""

    def __init__(self):
        import lpips

        super().__init__()
        self.scaling = lpips.ScalingLayer()

    def forward(self, x):
        return self.scaling(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


# --------------------------------------------------------------------------- ImageNet trunks in the hub cache
HUB_WEIGHTS = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights"}


def hub_weights(net: str) -> Optional[Path]:
    """The cached torchvision ImageNet weights file of `net` ('alex' | 'vgg') if present, else None; never downloads."""
    import torchvision

    url = getattr(torchvision.models, HUB_WEIGHTS[net]).IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def standard_lpips(net: str) -> LPIPSDistance:
    """lpips.LPIPS(net=...) with its calibrated heads, as an `LPIPSDistance` (`lpips[alex]`); the trunk's weights
    must be in the hub cache (`hub_weights`)."""
    import lpips

    if hub_weights(net) is None:
        raise FileNotFoundError(f"torchvision's ImageNet {net} weights are not in {torch.hub.get_dir()}/checkpoints "
                                "(nothing is downloaded here): use perceptual.pixel_backbone: digits-cnn")
    ref = lpips.LPIPS(net=net, pretrained=True, verbose=False)
    return LPIPSDistance(ref.net, ref.chns, f"lpips[{net}]", heads=list(ref.lins), preprocess=GreyToRGB())


# --------------------------------------------------------------------------- trunks trained here, on disk
STAGE = "train_perceptual"  # the root stage that writes models/perceptual
PIXEL, LATENT = "pixel", "latent"


def build_trunk(in_channels: int, net, meta: bool = False, num_classes: int = 10) -> TapNet:
    """A TapNet from a trunk config section (`perceptual.pixel`, `patch_trunks.lpips`, ...)."""
    with torch.device("meta") if meta else nullcontext():
        return TapNet(in_channels, net.channels, net.convs, net.pools, num_classes=num_classes)


def save_trunk(trunk: TapNet, out_dir: Path, meta: dict):
    """weights.pt + meta.json (in_channels, config, name, score card), atomically."""
    from .atomic import atomic_dir

    with atomic_dir(out_dir) as tmp:
        torch.save(trunk.state_dict(), tmp / "weights.pt")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))


def load_trunk(cfg, kind: str) -> Tuple[TapNet, dict]:
    """(trunk in eval mode, its meta) of models/perceptual/<kind> (kind: 'pixel' | 'latent')."""
    from .config import resolve

    return load_trunk_dir(resolve(cfg, cfg.paths.models, "perceptual", kind), STAGE)


def load_trunk_dir(d: Path, stage: str) -> Tuple[TapNet, dict]:
    """(trunk in eval mode, its meta) saved by `save_trunk` in folder d; `stage` = the stage that writes it."""
    from .config import read_json, reading, require

    d = require(d, stage, marker="weights.pt")
    meta = read_json(d / "meta.json", stage, keys=("in_channels", "net", "name"))
    trunk = build_trunk(meta["in_channels"], SimpleNamespace(**meta["net"]), num_classes=meta.get("num_classes", 10))
    with reading(d / "weights.pt", stage):
        trunk.load_state_dict(torch.load(d / "weights.pt", map_location="cpu"))
    return trunk.eval(), meta


def fit_trunk(net, train_cfg, x: torch.Tensor, y: torch.Tensor, xh: torch.Tensor, yh: torch.Tensor, *,
              run_dir: Path, desc: str, identity: dict, files: Sequence[Path] = (), num_classes: int = 10):
    """Train a TapNet class-supervised (cross-entropy of `classify` on labels y) with common.training.train;
    returns (trunk in eval mode, facts: params, held-out accuracy on (xh, yh), steps, final loss, train result).
    Why one function: every trunk trained here (digits, latents, RGB patches) follows this one recipe."""
    import torch.nn.functional as F

    from .models import count_parameters
    from .seeding import seed_everything
    from .training import fingerprint, train

    seed_everything(train_cfg.seed)
    trunk = build_trunk(x.shape[1], net, num_classes=num_classes)

    def loss_fn(m, xb, yb, gen):
        return F.cross_entropy(m.classify(xb), yb)

    res = train(trunk, loss_fn, [x, y], train_cfg, run_dir, desc=desc, use_ema=False,
                run_fingerprint=fingerprint(identity, list(files)))
    trunk = res.model.eval()
    with torch.no_grad():
        acc = float((trunk.classify(xh).argmax(1) == yh).float().mean())
    facts = {"params": count_parameters(trunk), "heldout_accuracy": acc, "steps": res.steps,
             "final_loss": res.history[-1]["loss"]}
    return trunk, facts, res


def pixel_lpips(cfg) -> LPIPSDistance:
    """The pixel LPIPS of `perceptual.pixel_backbone`: 'auto' (lpips[alex] where its ImageNet weights are cached,
    else the digits CNN), 'alex' / 'vgg' (standard LPIPS; fails without cached weights) or 'digits-cnn'."""
    choice = cfg.perceptual.pixel_backbone
    if choice in HUB_WEIGHTS or (choice == "auto" and hub_weights("alex") is not None):
        return standard_lpips("alex" if choice == "auto" else choice)
    if choice not in ("auto", "digits-cnn"):
        raise ValueError(f"perceptual.pixel_backbone = {choice!r}: one of auto, digits-cnn, alex, vgg")
    trunk, meta = load_trunk(cfg, PIXEL)
    return LPIPSDistance(trunk, trunk.channels, meta["name"])


def latent_lpips(cfg, ensemble: bool = True, preset: Optional[str] = None, l1: Optional[bool] = None) -> LPIPSDistance:
    """LatentLPIPS on the shared autoencoder's scaled latents; `ensemble`: E-LatentLPIPS with the augmentation
    `preset` (default `perceptual.augment`, the official 'bg') and the latent L1 term (default `perceptual.latent_l1`)."""
    pc = cfg.perceptual
    trunk, meta = load_trunk(cfg, LATENT)
    aug = DiffAugment.preset(preset or pc.augment) if ensemble else None
    name = ("e-" if ensemble else "") + meta["name"]
    return LPIPSDistance(trunk, trunk.channels, name, augment=aug, l1=pc.latent_l1 if l1 is None else l1)
