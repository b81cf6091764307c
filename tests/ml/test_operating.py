"""Per-source, per-level operating points (ml.operating) and local regions (ml.regions)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ml import metrics
from ml.data import load_folder
from ml.operating import flags, nested_threshold, source_kind
from ml.preprocess import Geometry
from ml.regions import MAX_CELLS, top_regions


def test_source_kinds_come_from_the_source_name_or_the_dicom_conversion_type() -> None:
    assert source_kind("mias") == "film"
    assert source_kind("DF") == "film"
    assert source_kind("rsna") == "digital"
    assert source_kind("") == "digital"


def test_a_nested_threshold_keeps_its_sensitivity_on_held_out_folds() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([1] * 60 + [0] * 240)
    probs = np.where(labels == 1, rng.beta(4, 3, labels.size), rng.beta(3, 4, labels.size))
    folds = np.arange(labels.size) % 5
    threshold, info = nested_threshold(labels, probs, folds, 0.90)
    assert info["nested_sensitivity"] >= 0.90
    # the plain in-sample threshold for 0.90 is higher (less sensitive) than the nested one, or equal
    assert threshold <= metrics.threshold_for_sensitivity(labels, probs, 0.90)
    assert metrics.sensitivity_specificity(labels, probs, threshold)[0] >= info["inner_target"] - 1e-9


def test_an_exam_is_flagged_exactly_when_one_of_its_breasts_is() -> None:
    thresholds = {"image": 0.4, "breast": 0.3, "region": 0.4}
    out = flags(thresholds, {"lcc": 0.2, "rcc": 0.5}, {"L": 0.31, "R": 0.1})
    assert out["breast"] == {"L": True, "R": False}
    assert out["exam"] is True
    assert out["image"] == {"lcc": False, "rcc": True}
    assert flags(thresholds, {}, {"L": 0.29, "R": 0.1})["exam"] is False


def _geometry(rows: int, cols: int) -> Geometry:
    return Geometry(
        original_shape=(rows * 32, cols * 32),
        flipped=False,
        box=(0, rows * 32, 0, cols * 32),
        resized_shape=(rows * 32, cols * 32),
        input_shape=(rows * 32, cols * 32),
        mask=np.ones((1, 1), bool),
        mask_factor=1,
    )


def test_a_region_stays_local_even_when_the_whole_breast_is_suspicious() -> None:
    """The old growth covered every cell at least half as suspicious as the peak: the whole breast here."""
    grid = np.full((32, 20), 0.6)
    grid[10, 10] = 0.9
    [region] = top_regions(grid, None, _geometry(32, 20), k=1)
    cells = region.width * region.height / (32 * 32)
    assert cells <= MAX_CELLS
    assert cells < 0.1 * grid.size


def test_no_region_is_reported_below_the_region_threshold() -> None:
    grid = np.full((8, 6), 0.05)
    grid[3, 3] = 0.2
    assert top_regions(grid, None, _geometry(8, 6), k=3, min_probability=0.25) == []
    assert len(top_regions(grid, None, _geometry(8, 6), k=3, min_probability=0.15)) == 1


def test_cross_validation_stores_calibration_and_thresholds_per_source(phantom_folder, tiny_config) -> None:
    from ml.train import train_with_cv

    torch.set_num_threads(1)
    examples = load_folder(*phantom_folder)
    patients = sorted({ex.patient_id for ex in examples})
    film = set(patients[: len(patients) // 2])
    examples = [dataclasses.replace(ex, source="mias" if ex.patient_id in film else "rsna") for ex in examples]
    config = dataclasses.replace(tiny_config, augment_views=("orig",), epochs=3, patience=3, feature_projection=0)
    checkpoint = train_with_cv(examples, config, n_folds=3, seed=0)
    assert set(checkpoint["sources"]) == {"film", "digital"}
    for entry in checkpoint["sources"].values():
        assert set(entry["thresholds"]) == {"image", "breast", "region"}
        assert entry["thresholds"]["region"] == entry["thresholds"]["image"]
        assert "exam_model" in entry and {"a", "b"} <= set(entry["calibration"])
        assert entry["figures"]["exam"]["rule"] == "flagged when any breast is"
    digital = checkpoint["sources"]["digital"]
    assert checkpoint["threshold"] == digital["thresholds"]["breast"]
    assert checkpoint["calibration"]["a"] == digital["calibration"]["a"]
    assert "sources" in checkpoint["metrics"]["cross_validation"]
