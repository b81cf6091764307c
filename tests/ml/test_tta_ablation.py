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
    assert set(result["sources"]) == {"orig", "vflip", "mean", "seed1", "seeds", "seeds+vflip"}
    figures = result["sources"]["mean"][images.parent.name]
    assert figures["n"] == 16 and 0.0 <= figures["image_auc"] <= 1.0 and figures["ci"][0] <= figures["ci"][1]
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 32  # the original and the flipped view of each image


def test_auxiliary_targets_read_density_and_recall_where_the_source_records_them() -> None:
    from ml.data import Example

    rsna = Example("x.png", "p1", "L", 0, tissue="C", source="rsna", hard_negative=True)
    assert ablation.aux_values(rsna) == (2.0, 1.0)
    mias = ablation.aux_values(Example("y.png", "p2", "R", 1, tissue="G", source="mias"))
    assert mias[0] == 1.5 and np.isnan(mias[1])  # mini-MIAS records no recall
    assert all(np.isnan(ablation.aux_values(Example("z.png", "p3", "R", 0))))


def test_the_finetune_command_trains_the_last_block_with_auxiliary_targets(phantom_folder, tmp_path) -> None:
    images, _, _ = phantom_folder
    data = ["--data", str(images.parent)]
    assert (
        ablation.main(["cache", *data, "--mid-dir", str(tmp_path / "mid"), "--feature-cache", str(tmp_path / "f")]) == 0
    )
    out = tmp_path / "ft.json"
    args = ["finetune", *data, "--mid-dir", str(tmp_path / "mid"), "--cv", "2", "--epochs", "1", "--json", str(out)]
    assert ablation.main([*args, "--aux-weight", "0.5"]) == 0
    result = json.loads(out.read_text())
    assert result["aux_weight"] == 0.5 and result["split"] == ablation.DEFAULT_SPLIT
    figures = result["sources"][images.parent.name]
    assert figures["n"] == 16 and 0.0 <= figures["image_auc"] <= 1.0
    assert len(result["oof"]) == 16 and all(np.isfinite(list(result["oof"].values())))
