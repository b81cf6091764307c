"""AdaBN: the trunk's BatchNorm statistics re-estimated on mammograms (labels unused).

The ImageNet trunk normalises every layer with statistics of natural photographs. A
mammogram is a grey breast on black: re-estimating the running mean and variance of each
BatchNorm layer over our own images (forward passes only, no gradient, no label) adapts the
frozen trunk to the domain (Li et al., "Revisiting Batch Normalization For Practical Domain
Adaptation", 2016). The adapted statistics live in the model's state dict, so a checkpoint
carries them and inference uses them.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from ml.config import ModelConfig
from ml.data import Example
from ml.features import file_digest
from ml.inference import load_image
from ml.model import MammoNet
from ml.preprocess import preprocess


def _bn_layers(model: MammoNet) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def adapt_batchnorm(
    model: MammoNet, examples: Sequence[Example], config: ModelConfig, cache_dir: str | Path | None = None
) -> None:
    """Replace the trunk's BatchNorm running statistics by their average over `examples`.

    Each image is one forward pass in training mode with a cumulative moving average
    (momentum None), so every image weighs the same. With `cache_dir` the result is kept
    under a key of the images' digests and the preprocessing.
    """
    layers = _bn_layers(model)
    key = hashlib.sha256(
        "|".join(
            sorted(file_digest(ex.image_path) + ex.laterality for ex in examples)
            + [config.backbone, config.preprocess_version, str(config.input_height), str(config.input_width)]
            + [str(config.norm_mean), str(config.norm_std)]
        ).encode()
    ).hexdigest()[:24]
    path = Path(cache_dir) / f"adabn-{key}.pt" if cache_dir else None
    if path is not None and path.exists():
        stats = torch.load(path, weights_only=True)
        for layer, (mean, var) in zip(layers, stats, strict=True):
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
        return
    saved = [(layer.momentum, layer.training) for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: every image counts once
        layer.train()
    with torch.no_grad():
        for ex in tqdm(examples, desc="adabn", unit="img", file=sys.stderr, disable=len(examples) < 20):
            prep = preprocess(load_image(ex.image_path), ex.laterality, config)
            x = torch.from_numpy(prep.image).view(1, 1, *prep.image.shape)
            model.features(x.contiguous(memory_format=torch.channels_last))
    for layer, (momentum, training) in zip(layers, saved, strict=True):
        layer.momentum = momentum
        layer.train(training)
    model.eval()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save([(layer.running_mean.clone(), layer.running_var.clone()) for layer in layers], path)
