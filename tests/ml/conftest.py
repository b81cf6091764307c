"""Synthetic mammogram phantoms and a tiny trained checkpoint shared by the ml tests.

No Django, no MIAS data: every image here is drawn with NumPy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.config import ModelConfig
from ml.data import Example
from tests.ml.phantoms import write_folder


@pytest.fixture
def tiny_config() -> ModelConfig:
    """Small input so the real backbone runs in milliseconds."""
    return ModelConfig(
        input_height=128,
        input_width=96,
        mask_max_side=128,
        head_hidden=16,
        head_dropout=0.0,
        pool_top_k=1,
        augment_views=("orig", "vflip"),
        epochs=25,
        patience=25,
        batch_size=8,
        lr=3e-3,
    )


@pytest.fixture(scope="session")
def phantom_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return write_folder(tmp_path_factory.mktemp("phantoms"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, phantom_folder: tuple[Path, Path, Path]) -> Path:
    """fit() on the phantom folder, saved: the model every inference/evaluation test loads."""
    from ml.checkpoint import save_checkpoint
    from ml.data import load_folder, patient_split
    from ml.train import fit

    torch.set_num_threads(1)
    config = ModelConfig(
        input_height=128,
        input_width=96,
        mask_max_side=128,
        head_hidden=16,
        head_dropout=0.0,
        pool_top_k=1,
        augment_views=("orig",),
        epochs=10,
        patience=10,
        batch_size=8,
    )
    examples: list[Example] = load_folder(*phantom_folder)
    train, val = patient_split(examples, 0.5, seed=0)
    checkpoint = fit(train, val, config, seed=0)
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
