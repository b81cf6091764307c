"""Test-time flips and seed ensembles, measured on the shipped head procedure's folds (issue 20 ablations)."""

from __future__ import annotations

import json

import numpy as np
import torch

from ml import ablation
from ml.config import ModelConfig
from ml.cv import cross_validate
from ml.data import load_folder
from ml.features import extract_features
from ml.model import build_model

SMALL = {"input_height": 128, "input_width": 96, "mask_max_side": 128, "epochs": 4, "patience": 4, "batch_size": 8}


def test_each_fold_head_also_scores_the_extra_views_out_of_fold(phantom_folder) -> None:
    torch.set_num_threads(1)
    config = ModelConfig.from_dict(SMALL)
    examples = load_folder(*phantom_folder)
    model = build_model(config, seed=0)
    feats = extract_features(model, examples, config, views=("orig",))
    same = cross_validate(examples, feats, config, 2, 0, model, extra_views=[feats])
    # the same pictures scored by the same fold heads: the extra out-of-fold logits equal the main ones
    np.testing.assert_allclose(same["extra_oof"][0], same["oof_logits"], atol=1e-6)
    other = cross_validate(examples, feats, config, 2, 0, model, head_seed=1000)
    assert other["folds"] == same["folds"]  # a seed ensemble keeps the folds
    assert not np.allclose(other["oof_logits"], same["oof_logits"])  # and changes the heads


def test_the_tta_command_reports_each_variant_per_source(phantom_folder, tmp_path) -> None:
    images, _, _ = phantom_folder
    out = tmp_path / "tta.json"
    code = ablation.main(
        [
            "tta",
            "--data",
            str(images.parent),
            "--feature-cache",
            str(tmp_path / "cache"),
            "--cv",
            "2",
            "--seeds",
            "2",
            "--config",
            json.dumps(SMALL),
            "--json",
            str(out),
        ]  # fmt: skip
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["sources"]) == {"orig", "vflip", "mean", "seeds", "seeds+vflip"}
    figures = result["sources"]["mean"][images.parent.name]
    assert figures["n"] == 16 and 0.0 <= figures["image_auc"] <= 1.0 and figures["ci"][0] <= figures["ci"][1]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 32  # the original and the flipped view of each image
