"""Checkpoints: everything needed to serve or evaluate a model, in one file.

A checkpoint is a plain dict (loadable with torch.load(weights_only=True)):
weights in fp16, the ModelConfig, the preprocessing version, the calibration,
the operating point, the exam model (ml.exam), metrics and a summary of the training data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ml.config import PREPROCESS_VERSION, ModelConfig

FORMAT = "mammo-checkpoint/1"
BASELINE_PATH = Path(__file__).resolve().parent / "weights" / "baseline.pt"


def make_checkpoint(
    model: torch.nn.Module,
    config: ModelConfig,
    *,
    calibration: tuple[float, float],
    threshold: float,
    operating_point: dict[str, Any],
    metrics: dict[str, Any],
    training_data: dict[str, Any],
    training: dict[str, Any],
    exam_model: dict[str, Any] | None = None,
    sources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    a, b = calibration
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()).cpu() for k, v in model.state_dict().items()
    }
    return {
        "format": FORMAT,
        "config": config.to_dict(),
        "preprocess_version": config.preprocess_version,
        "state_dict": state,
        # probability = sigmoid(a * logit + b); temperature = 1 / a
        "calibration": {"a": float(a), "b": float(b), "temperature": float(1.0 / a) if a else float("inf")},
        "threshold": float(threshold),
        "operating_point": operating_point,
        "metrics": metrics,
        "training_data": training_data,
        "training": training,
        # breast and exam levels from the image logits (ml.exam.ExamModel.to_dict())
        "exam_model": exam_model,
        # per source kind (ml.operating: 'film', 'digital'): calibration, exam model and the thresholds of
        # every level (image, breast, region); the top-level entries above are the default source's
        "sources": sources or {},
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path | None = None) -> dict[str, Any]:
    path = Path(path) if path is not None else BASELINE_PATH
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint")
    if checkpoint.get("preprocess_version") != PREPROCESS_VERSION:
        raise ValueError(
            f"{path} was trained with preprocessing {checkpoint.get('preprocess_version')!r}, "
            f"this code implements {PREPROCESS_VERSION!r}"
        )
    return checkpoint


def file_version(path: str | Path) -> str:
    """A short id for a checkpoint file: its name and the start of its SHA-256."""
    path = Path(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.stem}-{digest}"
