"""Larger trunks and BatchNorm statistics adapted to mammograms (issue 20 ablations)."""

from __future__ import annotations

import pytest
import torch

from ml.adabn import adapt_batchnorm
from ml.config import ModelConfig
from ml.data import load_folder
from ml.features import cache_key, extract_features
from ml.model import build_model


@pytest.mark.parametrize("backbone", ["efficientnet-lite1", "efficientnet-lite2"])
def test_the_larger_trunks_load_their_packaged_weights_and_give_1280_channels(backbone) -> None:
    config = ModelConfig(backbone=backbone, input_height=128, input_width=96, mask_max_side=128)
    model = build_model(config, seed=0)
    stem = model.backbone._conv_stem.weight
    assert stem.abs().sum() > 0 and not torch.allclose(
        stem, build_model(ModelConfig(), seed=0).backbone._conv_stem.weight[: stem.shape[0]]
    )
    with torch.inference_mode():
        feats = model.features(torch.rand(1, 1, 128, 96))
    assert feats.shape[1] == 1280


def test_an_unknown_trunk_is_refused() -> None:
    with pytest.raises(ValueError, match="no packaged ImageNet weights"):
        build_model(ModelConfig(backbone="efficientnet-b0"), seed=0)


def test_adabn_replaces_the_imagenet_statistics_and_is_cached(tmp_path, phantom_folder) -> None:
    images, labels, findings = phantom_folder
    examples = load_folder(images, labels, findings)[:6]
    config = ModelConfig(input_height=128, input_width=96, mask_max_side=128, adabn=True)
    model = build_model(config, seed=0)
    bn = model.backbone._bn0
    before = bn.running_mean.clone()
    adapt_batchnorm(model, examples, config, tmp_path)
    adapted = bn.running_mean.clone()
    assert not torch.allclose(before, adapted)
    assert not model.training and bn.momentum is not None  # back to inference, with the usual momentum
    assert len(list(tmp_path.glob("adabn-*.pt"))) == 1
    again = build_model(config, seed=0)
    adapt_batchnorm(again, examples, config, tmp_path)  # from the cache: the same statistics
    assert torch.allclose(again.backbone._bn0.running_mean, adapted)


def test_settings_that_change_the_features_change_the_cache_key(phantom_folder) -> None:
    images, labels, findings = phantom_folder
    ex = load_folder(images, labels, findings)[0]
    plain = ModelConfig()
    assert cache_key(ex, plain, "orig") == cache_key(ex, ModelConfig(), "orig")
    assert cache_key(ex, plain, "orig") != cache_key(ex, ModelConfig(adabn=True), "orig")
    tf = ModelConfig(norm_mean=(0.498, 0.498, 0.498), norm_std=(0.502, 0.502, 0.502))
    assert cache_key(ex, plain, "orig") != cache_key(ex, tf, "orig")


def test_an_adapted_model_still_extracts_features(tmp_path, phantom_folder) -> None:
    images, labels, findings = phantom_folder
    examples = load_folder(images, labels, findings)[:4]
    config = ModelConfig(input_height=128, input_width=96, mask_max_side=128, adabn=True)
    model = build_model(config, seed=0)
    adapt_batchnorm(model, examples, config)
    feats = extract_features(model, examples, config, views=["orig"])
    assert all(torch.isfinite(f.views[0].float()).all() for f in feats)
