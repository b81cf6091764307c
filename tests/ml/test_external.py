"""Pluggable models (ml.external): an ONNX export of ours serves the same probabilities; bad ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.external import ExternalModelError, ExternalPredictor, export_onnx, phantom_batch, validate
from ml.inference import Predictor, load_image


def test_the_baseline_exported_to_onnx_gives_the_same_probabilities(tiny_checkpoint: Path, phantom_folder, tmp_path):
    manifest = export_onnx(tiny_checkpoint, tmp_path / "onnx")
    ours, theirs = Predictor.load(tiny_checkpoint), Predictor.load(manifest)
    assert isinstance(theirs, ExternalPredictor)
    images_dir = phantom_folder[0]
    items = [(load_image(p), "L" if i % 2 else "R") for i, p in enumerate(sorted(images_dir.iterdir())[:6])]
    a, b = ours.predict(items), theirs.predict(items)
    assert np.allclose([r.probability for r in a], [r.probability for r in b], atol=1e-4)
    assert np.allclose([r.logit for r in a], [r.logit for r in b], atol=1e-4)
    assert [len(r.regions) for r in a] == [len(r.regions) for r in b]
    assert np.abs(a[0].heatmap - b[0].heatmap).max() < 1e-3
    _, report = validate(manifest, budget_ms=60_000)
    assert report["format"] == "onnx" and report["ms_per_image"] > 0


def _write(tmp_path: Path, module: torch.nn.Module, **manifest) -> Path:
    torch.jit.script(module).save(str(tmp_path / "m.pt"))
    body = {
        "format": "torchscript",
        "file": "m.pt",
        "input": {"height": 64, "width": 48},
        "outputs": {"patch_logits": 0},
    } | manifest
    path = tmp_path / "m.json"
    path.write_text(json.dumps(body))
    return path


class Cells(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 16) * 4 - 1


class NaNs(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 16) * float("nan")


class Flat(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2, 3))


def test_a_torchscript_model_is_served_with_cells_and_an_image_score(tmp_path):
    predictor, report = validate(_write(tmp_path, Cells()), budget_ms=60_000)
    [result] = predictor.predict([(phantom_batch(128, 96)[0], "L")])
    assert 0 < result.probability < 1 and result.heatmap.shape == (128, 96)


@pytest.mark.parametrize(
    "module, manifest, reason",
    [
        (NaNs(), {}, "NaN"),
        (Flat(), {}, "patch_logits must be shaped"),
        (Cells(), {"outputs": {"image_logit": 3}}, "names output 3"),
        (Cells(), {"format": "keras"}, "format must be one of"),
        (Cells(), {"input": {"height": 10, "width": 48}}, "input.height"),
        (Cells(), {"file": "../elsewhere.pt"}, "beside the manifest"),
        (Cells(), {"threshold": 2}, "threshold"),
    ],
)
def test_a_bad_model_or_manifest_is_refused_with_its_reason(tmp_path, module, manifest, reason):
    with pytest.raises(ExternalModelError, match=reason):
        validate(_write(tmp_path, module, **manifest), budget_ms=60_000)


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"not a model at all")
    (tmp_path / "m.json").write_text(
        json.dumps(
            {"format": "onnx", "file": "m.onnx", "input": {"height": 64, "width": 48}, "outputs": {"image_logit": 0}}
        )
    )
    with pytest.raises(ExternalModelError, match="not a loadable onnx model"):
        validate(tmp_path / "m.json")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ExternalModelError, match="not JSON"):
        validate(tmp_path / "m.json")


def test_a_model_too_slow_for_the_budget_is_refused(tmp_path):
    with pytest.raises(ExternalModelError, match="over the budget"):
        validate(_write(tmp_path, Cells()), budget_ms=0.001)
