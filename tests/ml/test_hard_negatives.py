"""RSNA's auxiliary labels: women recalled (BI-RADS 0) or biopsied and found benign are hard negatives."""

from __future__ import annotations

import torch

from ml.config import ModelConfig
from ml.data import load_folder
from ml.features import Features
from ml.fit import example_weights


def test_biopsy_and_birads_0_mark_normal_images_as_hard_negatives(tmp_path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in "abcd":
        (images / f"{name}.png").write_bytes(b"")
    csv = tmp_path / "images.csv"
    csv.write_text(
        "image_id,patient_id,laterality,label,birads,biopsy\n"
        "a,p1,L,normal,0,0\nb,p1,R,normal,1,1\nc,p2,L,normal,1,0\nd,p2,R,abnormal,0,1\n"
    )
    got = {ex.image_id: ex.hard_negative for ex in load_folder(images, csv)}
    assert got == {"a": True, "b": True, "c": False, "d": False}  # a cancer is never a hard negative


def _item(label: int, hard: bool) -> Features:
    return Features([], [], [], label, "p", "rsna", hard_negative=hard)


def test_hard_negatives_weigh_more_only_when_asked() -> None:
    items = [_item(1, False), _item(0, True), _item(0, False), _item(0, False)]
    plain = example_weights(items, ModelConfig())
    assert torch.isclose(plain[1], plain[2])
    weighted = example_weights(items, ModelConfig(hard_negative_weight=3.0))
    assert torch.isclose(weighted[1], 3 * weighted[2])
    assert torch.isclose(weighted.mean(), torch.tensor(1.0))
