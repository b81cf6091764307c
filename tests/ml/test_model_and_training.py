from __future__ import annotations

import re

import numpy as np
import torch

from ml import metrics
from ml.config import ModelConfig
from ml.data import Example, load_folder, patient_folds
from ml.features import extract_features, patch_targets
from ml.fit import head_logits, train_head
from ml.model import build_model
from ml.preprocess import preprocess
from tests.ml.phantoms import phantom, write_folder


def test_the_model_gives_an_image_logit_and_a_patch_grid(tiny_config: ModelConfig) -> None:
    model = build_model(tiny_config).eval()
    with torch.inference_mode():
        logit, patch = model(torch.rand(2, 1, 128, 96))
    assert logit.shape == (2,) and logit.dtype == torch.float32
    assert patch.shape == (2, 1, 4, 3)


def test_patch_targets_mark_the_finding_and_leave_normals_negative(tiny_config: ModelConfig) -> None:
    image = phantom(lesion=(60, 160, 20))
    prep = preprocess(image, "L", tiny_config)
    abnormal = Example("x.png", "p", "L", 1, findings=((60, 160, 20),))
    target = patch_targets(abnormal, prep.geometry, (4, 3), tiny_config)
    assert (target == 1).sum() >= 1 and set(np.unique(target)) <= {-1.0, 1.0}
    row, col = np.argwhere(target == 1)[0]
    assert col == 0 and 1 <= row <= 2  # near the chest wall, mid-height
    normal = Example("x.png", "p", "L", 0)
    assert (patch_targets(normal, prep.geometry, (4, 3), tiny_config) == 0).all()


def test_a_tiny_model_learns_a_separable_synthetic_task(tmp_path, tiny_config: ModelConfig) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    images, labels, findings = write_folder(tmp_path, n_patients=16, seed=10)
    examples = load_folder(images, labels, findings)
    held = patient_folds(examples, 4, seed=0)[0]
    train = [ex for i, ex in enumerate(examples) if i not in set(held.tolist())]
    test = [examples[i] for i in held]
    model = build_model(tiny_config)
    train_f = extract_features(model, train, tiny_config)
    test_f = extract_features(model, test, tiny_config, views=["orig"])
    result = train_head(model, train_f, None, tiny_config, seed=0)
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    auc = metrics.roc_auc([ex.label for ex in test], head_logits(model, test_f))
    assert auc >= 0.9


def test_the_training_cli_cross_validates_and_writes_a_servable_checkpoint(tmp_path, monkeypatch) -> None:
    from ml import train
    from ml.checkpoint import load_checkpoint

    images, labels, findings = write_folder(tmp_path / "data", n_patients=6, seed=30)
    small = ModelConfig(input_height=128, input_width=96, mask_max_side=128, epochs=4, patience=4, batch_size=8)
    monkeypatch.setattr(train, "ModelConfig", lambda: small)
    out = tmp_path / "model.pt"
    args = ["--images", str(images), "--labels", str(labels), "--findings", str(findings), "--out", str(out)]
    assert train.main([*args, "--cv", "3", "--seed", "1", "--threads", "1"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint["metrics"]["cross_validation"]["n"] == 12
    assert checkpoint["training"]["seed"] == 1 and "--cv 3" in checkpoint["training"]["command"]
    assert 0.0 <= checkpoint["threshold"] <= 1.0


def test_one_model_trains_on_several_sources_and_reports_each(tmp_path, monkeypatch) -> None:
    from ml import train
    from ml.checkpoint import load_checkpoint

    for name, seed in (("film", 40), ("digital", 50)):
        _, labels, _ = write_folder(tmp_path / name, n_patients=6, seed=seed)
        labels.write_text(re.sub(r",pat(\d)", rf",{name}-pat\1", labels.read_text()))  # women differ by source
    small = ModelConfig(input_height=128, input_width=96, mask_max_side=128, epochs=3, patience=3, batch_size=8)
    monkeypatch.setattr(train, "ModelConfig", lambda: small)
    out = tmp_path / "model.pt"
    data = ["--data", str(tmp_path / "film"), "--data", f"{tmp_path / 'digital'}=rsna-like"]
    assert train.main([*data, "--out", str(out), "--cv", "3", "--threads", "1", "--config", '{"pool_top_k": 2}']) == 0
    checkpoint = load_checkpoint(out)
    levels = checkpoint["metrics"]["cross_validation"]["levels"]
    assert {"film", "rsna-like", "all"} <= set(levels["image"]) and levels["breast"]["film"]["n"] == 12
    assert checkpoint["config"]["pool_top_k"] == 2 and set(checkpoint["exam_model"]) == {
        "breast_weights",
        "exam_weights",
    }
