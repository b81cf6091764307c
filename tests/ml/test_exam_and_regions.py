"""The exam model (breast and exam levels), top regions and inversion: hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from ml.exam import ExamModel, breast_features, fit_exam_model
from ml.io import looks_inverted
from ml.metrics import sigmoid, wilson_interval
from ml.preprocess import Geometry
from ml.regions import input_box_to_original, peak_point, top_regions
from ml.report import pointing_game
from ml.scoring import score_exam
from tests.ml.phantoms import phantom


def test_breast_features_use_both_views_and_the_other_breast() -> None:
    features = breast_features({"L": [1.0, 3.0], "R": [-1.0]})
    assert features["L"].tolist() == [2.0, 3.0, 3.0]
    assert features["R"].tolist() == [-1.0, -1.0, -3.0]
    assert breast_features({"L": [0.5]})["L"].tolist() == [0.5, 0.5, 0.0]


def test_the_exam_model_computes_what_its_weights_say() -> None:
    model = ExamModel(breast_weights=(1.0, 0.5, 0.25, -1.0), exam_weights=(2.0, 0.1))
    scores = model.score([("L", 1.0), ("L", 3.0), ("R", -1.0)])
    left = 1.0 * 2.0 + 0.5 * 3.0 + 0.25 * 3.0 - 1.0
    right = -1.0 - 0.5 + 0.25 * -3.0 - 1.0
    assert scores.breast_logits["L"] == pytest.approx(left)
    assert scores.breasts["R"] == pytest.approx(sigmoid(right))
    assert scores.exam == pytest.approx(sigmoid(2.0 * max(left, right) + 0.1))


def test_a_fitted_exam_model_prefers_the_one_sided_signal() -> None:
    rng = np.random.default_rng(0)
    logits, exams, sides, labels = [], [], [], []
    for e in range(200):
        shared = rng.normal(0, 2)  # what both breasts share (density, exposure): not suspicious
        sick = e % 4 == 0
        for side in ("L", "R"):
            for _ in range(2):
                logits.append(shared + (2.0 if sick and side == "L" else 0.0) + rng.normal(0, 0.3))
                exams.append(f"e{e}")
                sides.append(side)
                labels.append(int(sick and side == "L"))
    model = fit_exam_model(np.array(logits), exams, sides, labels)
    assert model.breast_weights[2] > 0  # asymmetry against the other breast counts


def test_a_missing_other_breast_is_not_evidence() -> None:
    """The RSNA shortcut: cancers imaged alone, normal breasts always with their partner. The model must
    not learn that a lone breast is suspicious: a lone breast scores as its twin with a same-level partner."""
    rng = np.random.default_rng(1)
    logits, exams, sides, labels = [], [], [], []
    for e in range(300):
        sick = e % 3 == 0
        level = rng.normal(0, 1)
        for side in ("L",) if sick else ("L", "R"):
            logits.append(level)
            exams.append(f"e{e}")
            sides.append(side)
            labels.append(int(sick))
    model = fit_exam_model(np.array(logits), exams, sides, labels)
    alone = model.score([("L", 0.5)])
    paired = model.score([("L", 0.5), ("R", 0.5)])
    assert alone.breasts["L"] == pytest.approx(paired.breasts["L"])
    assert alone.exam == pytest.approx(paired.exam)


def test_the_fallback_without_an_exam_model_is_the_mean_of_views_and_the_worst_breast() -> None:
    breasts, exam = score_exam(None, [("L", None, 0.2), ("L", None, 0.4), ("R", None, 0.1)])
    assert breasts == {"L": pytest.approx(0.3), "R": pytest.approx(0.1)} and exam == pytest.approx(0.3)
    breasts, exam = score_exam(ExamModel.default().to_dict(), [("L", 0.0, 0.5), ("R", 2.0, 0.9)])
    assert breasts["R"] == pytest.approx(sigmoid(2.0)) and exam == pytest.approx(sigmoid(2.0))


def _geometry(flipped: bool = False) -> Geometry:
    return Geometry(
        original_shape=(200, 100),
        flipped=flipped,
        box=(0, 200, 0, 100),
        resized_shape=(64, 32),
        input_shape=(64, 32),
        mask=np.ones((2, 1), bool),
        mask_factor=100,
    )


def test_regions_are_boxes_in_original_pixels_most_suspicious_first() -> None:
    grid = np.zeros((8, 4))
    grid[1, 1] = 0.9  # a hot spot
    grid[1, 2] = 0.6  # part of the same blob (>= half the peak)
    grid[6, 3] = 0.5  # a second place
    regions = top_regions(grid, None, _geometry(), k=3, min_probability=0.1)
    assert [round(r.probability, 2) for r in regions] == [0.9, 0.5]
    first = regions[0]
    # cells are 8x8 input pixels = 25x25 original pixels; the blob spans rows 1, columns 1-2
    assert (first.x, first.y, first.width, first.height) == pytest.approx((25.0, 25.0, 50.0, 25.0))
    assert (first.peak_x, first.peak_y) == pytest.approx((37.5, 37.5))


def test_region_boxes_undo_the_flip_and_skip_cells_outside_the_breast() -> None:
    x, _, w, _ = input_box_to_original(0, 8, 0, 8, _geometry(flipped=True))
    assert (x, w) == pytest.approx((75.0, 25.0))  # the left input column is the right of the original
    grid = np.zeros((8, 4))
    grid[0, 0] = 1.0
    valid = np.ones((8, 4), bool)
    valid[0, 0] = False
    assert peak_point(grid, valid, _geometry()) != pytest.approx((12.5, 12.5))


def test_an_inverted_image_is_recognised_and_a_normal_one_is_not() -> None:
    image = phantom(seed=3)
    assert not looks_inverted(image)
    assert looks_inverted(1.0 - image)


def test_pointing_game_counts_only_images_with_a_position() -> None:
    result = pointing_game([True, False, None, True])
    assert (result["n"], result["hits"]) == (3, 2) and result["rate"] == pytest.approx(2 / 3)
    low, high = wilson_interval(2, 3)
    assert result["ci_low"] == pytest.approx(low) and 0 < low < 2 / 3 < high < 1


def test_a_display_sized_heatmap_matches_the_full_one_shrunk() -> None:
    from PIL import Image

    from ml.config import ModelConfig
    from ml.preprocess import heatmap_to_original, preprocess

    image = np.repeat(np.repeat(phantom(seed=1), 4, 0), 4, 1)[:, ::-1].copy()  # 1280 x 1024, chest wall right
    prep = preprocess(image, "R", ModelConfig(input_height=256, input_width=160))
    heat = np.random.default_rng(0).random((8, 5)).astype(np.float32)
    full = heatmap_to_original(heat, prep.geometry)
    small = heatmap_to_original(heat, prep.geometry, max_side=256)
    assert full.shape == image.shape and max(small.shape) == 256
    shrunk = np.asarray(Image.fromarray(full).resize(small.shape[::-1], Image.Resampling.BOX))
    assert np.abs(shrunk - small).mean() < 0.005


def test_an_inverted_image_file_is_read_and_shown_the_right_way_round(tmp_path) -> None:
    from PIL import Image

    from ml.io import image_to_float, image_to_uint8

    image = phantom(seed=4)
    path = tmp_path / "inverted.png"
    Image.fromarray(((1.0 - image) * 255).round().astype(np.uint8)).save(path)  # a MONOCHROME1 export
    fixed = image_to_float(path)
    assert np.abs(fixed - image).mean() < 0.01
    assert np.abs(image_to_uint8(path).astype(np.float32) / 255 - image).mean() < 0.01
    assert np.abs(image_to_float(path, fix_inversion=False) - (1.0 - image)).mean() < 0.01
