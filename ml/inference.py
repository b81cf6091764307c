"""Serving: load a checkpoint once, then predict batches of (image, laterality).

predictor = Predictor.load()            # the shipped baseline, CUDA if present
[result] = predictor.predict([(load_image(path), "L")])
result.probability, result.heatmap      # heatmap has the image's shape
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch

from ml.checkpoint import BASELINE_PATH, file_version, load_checkpoint
from ml.config import ModelConfig
from ml.io import DecodeError, dicom_to_float, image_to_float
from ml.metrics import sigmoid
from ml.model import MammoNet, build_model
from ml.preprocess import Preprocessed, heatmap_to_original, preprocess


@dataclass
class PredictionResult:
    probability: float  # calibrated probability that the image is abnormal
    heatmap: np.ndarray  # float32 in [0, 1], same shape as the input image
    logit: float  # uncalibrated image logit
    preprocess_ms: float
    inference_ms: float  # this image's share of its batch's forward pass
    # Exam-aware probability using the other breast (Predictor.predict_exam); None without a partner.
    bilateral_probability: float | None = None


def bilateral_logits(logits: np.ndarray, partners: Sequence[int | None], weight: float) -> np.ndarray:
    """logit - weight * partner's logit where a partner exists (NaN where it does not)."""
    logits = np.asarray(logits, dtype=np.float64)
    out = np.full(logits.shape, np.nan)
    for i, j in enumerate(partners):
        if j is not None:
            out[i] = logits[i] - weight * logits[j]
    return out


def load_image(path: str | Path) -> np.ndarray:
    """Presentation array (float32 [0, 1]) of a DICOM or an image file."""
    path = Path(path)
    with open(path, "rb") as fh:
        fh.seek(128)
        is_dicom = fh.read(4) == b"DICM"
    if is_dicom or path.suffix.lower() in (".dcm", ".dicom"):
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise DecodeError(f"not a readable DICOM file: {exc}") from exc
        return dicom_to_float(ds)
    return image_to_float(path)


def laterality_of(path: str | Path) -> str:
    """ImageLaterality (or Laterality) of a DICOM file; '' when unknown or not DICOM."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return ""
    return str(ds.get("ImageLaterality", "") or ds.get("Laterality", "") or "").upper()


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """A loaded model: call `predict` many times; load it once per process and device."""

    def __init__(self, model: MammoNet, checkpoint: dict[str, Any], device: torch.device, version: str):
        self.device = device
        self.model = model.to(device).eval()
        if device.type in ("cpu", "cuda"):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.config: ModelConfig = model.config
        self.version = version
        self.threshold = float(checkpoint["threshold"])
        self.calibration = (float(checkpoint["calibration"]["a"]), float(checkpoint["calibration"]["b"]))
        self.info = {k: v for k, v in checkpoint.items() if k != "state_dict"}
        bilateral = checkpoint.get("bilateral") or {}
        self.bilateral_threshold: float | None = bilateral.get("threshold")
        self.bilateral_calibration = (
            (float(bilateral["calibration"]["a"]), float(bilateral["calibration"]["b"])) if bilateral else None
        )

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None) -> Predictor:
        path = Path(path) if path is not None else BASELINE_PATH
        checkpoint = load_checkpoint(path)
        return cls.from_checkpoint(checkpoint, device=device, version=file_version(path))

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], device: str | None = None, version: str = "in-memory"
    ) -> Predictor:
        config = ModelConfig.from_dict(checkpoint["config"])
        model = build_model(config, checkpoint["state_dict"])
        return cls(model, checkpoint, pick_device(device), version)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return sigmoid(a * np.asarray(logits, dtype=np.float64) + b)

    def bilateral_probability(self, logit: float, partner_logit: float) -> float | None:
        """Calibrated exam-aware probability from this breast's and the other breast's logits."""
        if self.bilateral_calibration is None:
            return None
        a, b = self.bilateral_calibration
        z = bilateral_logits(np.array([logit, partner_logit]), [1, None], self.config.bilateral_weight)[0]
        return float(sigmoid(a * z + b))

    def predict_exam(self, items: Sequence[tuple[np.ndarray, str]], batch_size: int = 8) -> list[PredictionResult]:
        """`predict`, plus `bilateral_probability` for each image whose other breast (L/R) is among the items."""
        results = self.predict(items, batch_size)
        lateralities = [(lat or "").strip().upper()[:1] for _, lat in items]
        for i, lat in enumerate(lateralities):
            other = {"L": "R", "R": "L"}.get(lat)
            partner = next((j for j, lj in enumerate(lateralities) if other and lj == other), None)
            if partner is not None:
                results[i].bilateral_probability = self.bilateral_probability(results[i].logit, results[partner].logit)
        return results

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model on ready inputs (B, H, W) float32: image logits (B,), patch logits (B, h, w)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).unsqueeze(1).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logit, patch = self.model(x)
            else:
                logit, patch = self.model(x)
        return logit.float().cpu().numpy(), patch.float().cpu().numpy()[:, 0]

    def predict(self, items: Sequence[tuple[np.ndarray, str]], batch_size: int = 8) -> list[PredictionResult]:
        results: list[PredictionResult] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            prepared: list[Preprocessed] = []
            prep_ms: list[float] = []
            for image, laterality in chunk:
                t0 = time.perf_counter()
                prepared.append(preprocess(image, laterality, self.config))
                prep_ms.append((time.perf_counter() - t0) * 1000.0)
            t0 = time.perf_counter()
            logits, patches = self.forward(np.stack([p.image for p in prepared]))
            share = (time.perf_counter() - t0) * 1000.0 / len(chunk)
            probs = self.calibrated(logits)
            for i, prep in enumerate(prepared):
                heat = self.calibrated(patches[i]).astype(np.float32)
                results.append(
                    PredictionResult(
                        probability=float(probs[i]),
                        heatmap=heatmap_to_original(heat, prep.geometry),
                        logit=float(logits[i]),
                        preprocess_ms=prep_ms[i],
                        inference_ms=share,
                    )
                )
        return results
