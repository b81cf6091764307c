"""Serving: load a checkpoint once, then predict batches of (image, laterality).

predictor = Predictor.load()            # the shipped baseline, CUDA if present
[result] = predictor.predict([(load_image(path), "L")])
result.probability, result.heatmap      # heatmap has the image's shape
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch

from ml import operating
from ml.checkpoint import BASELINE_PATH, file_version, load_checkpoint
from ml.config import ModelConfig
from ml.exam import ExamModel, ExamScores
from ml.io import DecodeError, dicom_to_float, image_to_float
from ml.metrics import sigmoid
from ml.model import MammoNet, breast_cells, build_model
from ml.preprocess import Preprocessed, heatmap_to_original, preprocess
from ml.regions import peak_point, top_regions


@dataclass
class PredictionResult:
    probability: float  # calibrated probability that the image is abnormal
    heatmap: np.ndarray  # float32 in [0, 1], same shape as the input image
    logit: float  # uncalibrated image logit
    preprocess_ms: float
    inference_ms: float  # this image's share of its batch's forward pass
    # Top suspicious regions (ml.regions): [{x, y, width, height, probability}] in original pixels.
    regions: list[dict[str, float]] = field(default_factory=list)
    heatmap_ms: float = 0.0  # calibration, heatmap mapping and regions for this image
    decode_ms: float = 0.0  # its loader's time (predict_stream only)
    source_kind: str = ""  # 'film' or 'digital' (ml.operating): which calibration and thresholds scored it
    peak: tuple[float, float] | None = None  # the most suspicious cell's centre, original pixels (pointing game)


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
        # Breast and exam levels (ml.exam); a checkpoint from before them scores with the default.
        self.exam_model = ExamModel.from_dict(checkpoint.get("exam_model"))
        self.sources: dict[str, dict[str, Any]] = dict(checkpoint.get("sources") or {})

    def operating(self, kind: str | None = None) -> dict[str, Any]:
        """Calibration (a, b), exam model and thresholds (image, breast, region) for a source kind; a checkpoint
        without per-source entries, or an unknown kind, serves its default calibration and threshold."""
        entry = self.sources.get(operating.source_kind(kind)) if kind else None
        if entry is None:
            default = self.threshold
            return {
                "kind": "",
                "calibration": self.calibration,
                "exam_model": self.exam_model,
                "thresholds": {"image": default, "breast": default, "region": default},
            }
        return {
            "kind": operating.source_kind(kind),
            "calibration": (float(entry["calibration"]["a"]), float(entry["calibration"]["b"])),
            "exam_model": ExamModel.from_dict(entry.get("exam_model")),
            "thresholds": {k: float(v) for k, v in entry["thresholds"].items()},
        }

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | None = None) -> Predictor:
        path = Path(path) if path is not None else BASELINE_PATH
        if path.suffix == ".json":  # an ONNX or TorchScript model's manifest (ml.external)
            from ml.external import ExternalPredictor

            return ExternalPredictor(path, device=device)
        checkpoint = load_checkpoint(path)
        return cls.from_checkpoint(checkpoint, device=device, version=file_version(path))

    @classmethod
    def from_checkpoint(
        cls, checkpoint: dict[str, Any], device: str | None = None, version: str = "in-memory"
    ) -> Predictor:
        config = ModelConfig.from_dict(checkpoint["config"])
        model = build_model(config, checkpoint["state_dict"])
        return cls(model, checkpoint, pick_device(device), version)

    def calibrated(self, logits: np.ndarray, kind: str | None = None) -> np.ndarray:
        a, b = self.operating(kind)["calibration"] if kind else self.calibration
        return sigmoid(a * np.asarray(logits, dtype=np.float64) + b)

    def score_exam(self, images: Sequence[tuple[str, float]], kind: str | None = None) -> ExamScores:
        """Breast and exam probabilities from (laterality, image logit) pairs of one exam."""
        return (self.operating(kind)["exam_model"] if kind else self.exam_model).score(images)

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw model on ready inputs (B, H, W) float32: image logits (B,), patch logits (B, h, w), and
        which patch cells lie inside the breast (B, h, w)."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).unsqueeze(1).to(self.device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    logit, patch = self.model(x)
            else:
                logit, patch = self.model(x)
            valid = breast_cells(x, patch.shape[-2:])
        return logit.float().cpu().numpy(), patch.float().cpu().numpy()[:, 0], valid.cpu().numpy()[:, 0]

    def predict(
        self, items: Sequence[tuple[np.ndarray, str]], batch_size: int = 8, heatmap_max_side: int | None = None
    ) -> list[PredictionResult]:
        """Results in order; heatmaps at the original size, or at most `heatmap_max_side` on the longest side."""
        results: list[PredictionResult] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            prepared: list[Preprocessed] = []
            prep_ms: list[float] = []
            kinds: list[str] = []
            for image, laterality, *kind in chunk:
                t0 = time.perf_counter()
                prepared.append(preprocess(image, laterality, self.config))
                prep_ms.append((time.perf_counter() - t0) * 1000.0)
                kinds.append(kind[0] if kind else "")
            results.extend(self._run(prepared, prep_ms, heatmap_max_side, kinds))
        return results

    def _run(
        self,
        prepared: Sequence[Preprocessed],
        prep_ms: Sequence[float],
        heatmap_max_side: int | None,
        kinds: Sequence[str] | None = None,
    ) -> list[PredictionResult]:
        """Forward pass on preprocessed images, then calibration, heatmaps and regions."""
        return self._finish(prepared, prep_ms, *self._forward_timed(prepared), heatmap_max_side, kinds)

    def _forward_timed(self, prepared: Sequence[Preprocessed]) -> tuple[tuple[np.ndarray, ...], float]:
        t0 = time.perf_counter()
        outputs = self.forward(np.stack([p.image for p in prepared]))
        return outputs, (time.perf_counter() - t0) * 1000.0 / len(prepared)

    def _finish(
        self,
        prepared: Sequence[Preprocessed],
        prep_ms: Sequence[float],
        outputs: tuple[np.ndarray, ...],
        share: float,
        heatmap_max_side: int | None,
        kinds: Sequence[str] | None = None,
    ) -> list[PredictionResult]:
        """Calibration, heatmaps and regions (only those above the region threshold) from the forward pass's
        outputs, each image with its source kind's calibration and thresholds."""
        logits, patches, valid = outputs
        out = []
        for i, prep in enumerate(prepared):
            t1 = time.perf_counter()
            op = self.operating(kinds[i] if kinds else None)
            a, b = op["calibration"]
            heat = sigmoid(a * patches[i].astype(np.float64) + b).astype(np.float32)
            regions = top_regions(heat, valid[i], prep.geometry, min_probability=op["thresholds"]["region"])
            result = PredictionResult(
                probability=float(sigmoid(a * float(logits[i]) + b)),
                heatmap=heatmap_to_original(heat, prep.geometry, heatmap_max_side),
                logit=float(logits[i]),
                preprocess_ms=prep_ms[i],
                inference_ms=share,
                regions=[r.to_dict() for r in regions],
                source_kind=op["kind"],
                peak=peak_point(heat, valid[i], prep.geometry),
            )
            result.heatmap_ms = (time.perf_counter() - t1) * 1000.0
            out.append(result)
        return out

    def predict_stream(
        self,
        loaders: Sequence[Callable[[], tuple[np.ndarray, str]]],
        batch_size: int = 8,
        heatmap_max_side: int | None = None,
    ) -> list[PredictionResult | BaseException]:
        """`stream_batches`, all at once: a result or its loader's exception for each loader, in order."""
        return [item for batch in self.stream_batches(loaders, batch_size, heatmap_max_side) for item in batch]

    def stream_batches(
        self,
        loaders: Sequence[Callable[[], tuple[np.ndarray, str]]],
        batch_size: int = 8,
        heatmap_max_side: int | None = None,
        more: Callable[[], Sequence[Callable[[], tuple[np.ndarray, str]]]] | None = None,
    ) -> Iterator[list[PredictionResult | BaseException]]:
        """Like `predict`, but each item is a loader (decode the file, say) run with preprocessing on a
        background thread, and results come a batch at a time, so the caller stores one batch while the
        next is loaded. Yields, per batch and in order, a result or the exception its loader (or
        preprocessing) raised: one bad image never costs the others their result. When `loaders` run out,
        `more()` (called on the caller's thread, when the next batch is due) may give more; [] ends the stream.

        When the loader runs: on a GPU, during the forward pass (the model then needs no CPU, and is never
        kept waiting by decoding); on the CPU, only after it, while this batch's heatmaps are made and the
        caller stores them. A CPU forward pass keeps every core busy with threads that wait for each other
        at every layer: a loader running beside it slowed it by more than the loader's own time.
        """
        queue = list(loaders)

        def next_chunk() -> list[Callable[[], tuple[np.ndarray, str]]]:
            nonlocal queue
            if not queue and more is not None:
                queue = list(more())
            chunk, queue = queue[:batch_size], queue[batch_size:]
            return chunk

        def load(chunk) -> list[tuple]:
            """(preprocessed image or the exception, decode ms, preprocess ms[, source kind]) for one batch of
            loaders; a loader gives (image, laterality) or (image, laterality, source kind)."""
            out: list[tuple] = []
            for loader in chunk:
                t0 = time.perf_counter()
                try:
                    image, laterality, *kind = loader()
                    t1 = time.perf_counter()
                    prepared = preprocess(image, laterality, self.config)
                    out.append((prepared, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0, *kind))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # the loader's reason goes back with the item; a native decoder's
                    out.append((exc, 0.0, 0.0))  # panic (pyo3's PanicException) is a BaseException, not an Exception
            return out

        overlap_forward = self.device.type != "cpu"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mammo-loader") as pool:
            chunk = next_chunk()
            pending = pool.submit(load, chunk) if chunk else None
            while pending is not None:
                loaded = pending.result()
                pending = None
                if overlap_forward and (chunk := next_chunk()):
                    pending = pool.submit(load, chunk)
                ok = [(i, item) for i, item in enumerate(loaded) if not isinstance(item[0], BaseException)]
                if ok:
                    outputs, share = self._forward_timed([item[0] for _, item in ok])
                if not overlap_forward and (chunk := next_chunk()):
                    pending = pool.submit(load, chunk)
                batch_results: dict[int, PredictionResult] = {}
                if ok:
                    finished = self._finish(
                        [item[0] for _, item in ok],
                        [item[2] for _, item in ok],
                        outputs,
                        share,
                        heatmap_max_side,
                        [item[3] if len(item) > 3 else "" for _, item in ok],
                    )
                    for (i, item), result in zip(ok, finished, strict=True):
                        result.decode_ms = item[1]
                        batch_results[i] = result
                yield [batch_results.get(i, item[0]) for i, item in enumerate(loaded)]
