"""Evaluate a checkpoint on a labelled folder.

    python -m ml.evaluate --images DIR --labels CSV [--model PATH] --json OUT [--plots DIR]

JSON keys: n, n_abnormal, auc, auc_ci_low, auc_ci_high (bootstrap by patient),
threshold, sensitivity, specificity (at the model's stored operating point), ece,
seconds. `evaluate()` is the same thing as a function for the portal's promotion rule.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ml import metrics
from ml.data import Example, contralateral, load_folder
from ml.inference import Predictor, bilateral_logits, load_image

KEYS = (
    "n",
    "n_abnormal",
    "auc",
    "auc_ci_low",
    "auc_ci_high",
    "threshold",
    "sensitivity",
    "specificity",
    "ece",
    "seconds",
)


def _predictor(model: Predictor | dict[str, Any] | str | Path | None) -> Predictor:
    if isinstance(model, Predictor):
        return model
    if isinstance(model, dict):
        return Predictor.from_checkpoint(model)
    return Predictor.load(model)


def predict_examples(predictor: Predictor, examples: Sequence[Example], batch_size: int = 8) -> np.ndarray:
    """Uncalibrated logits, one per example (images decoded a batch at a time)."""
    logits: list[float] = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        results = predictor.predict([(load_image(ex.image_path), ex.laterality) for ex in chunk], batch_size=batch_size)
        logits.extend(r.logit for r in results)
    return np.asarray(logits)


def summarize_predictions(
    labels: np.ndarray, probs: np.ndarray, groups: Sequence[str], threshold: float, seconds: float, n_bins: int = 10
) -> dict[str, Any]:
    low, high = metrics.bootstrap_auc_ci(labels, probs, groups)
    sens, spec = metrics.sensitivity_specificity(labels, probs, threshold)
    return {
        "n": int(labels.size),
        "n_abnormal": int(labels.sum()),
        "auc": metrics.roc_auc(labels, probs),
        "auc_ci_low": low,
        "auc_ci_high": high,
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": spec,
        "ece": metrics.expected_calibration_error(labels, probs, n_bins),
        "seconds": round(seconds, 3),
    }


def evaluate(
    predictor_or_model: Predictor | dict[str, Any] | str | Path | None,
    examples: Sequence[Example],
    plots_dir: str | Path | None = None,
    batch_size: int = 8,
    bilateral: bool = False,
) -> dict[str, Any]:
    """Metrics of a model (Predictor, checkpoint dict or path; None = shipped baseline) on examples.

    bilateral=True scores each image against the other breast of the same woman
    (images without one are left out) with the checkpoint's bilateral calibration
    and threshold.
    """
    started = time.perf_counter()
    predictor = _predictor(predictor_or_model)
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    groups = np.array([ex.patient_id for ex in examples])
    logits = predict_examples(predictor, examples, batch_size)
    if bilateral:
        if predictor.bilateral_calibration is None or predictor.bilateral_threshold is None:
            raise ValueError("this checkpoint has no bilateral calibration")
        exam = bilateral_logits(logits, contralateral(examples), predictor.config.bilateral_weight)
        keep = ~np.isnan(exam)
        a, b = predictor.bilateral_calibration
        labels, groups = labels[keep], groups[keep]
        probs, threshold = metrics.calibrate(exam[keep], a, b), predictor.bilateral_threshold
    else:
        probs, threshold = predictor.calibrated(logits), predictor.threshold
    result = summarize_predictions(
        labels, probs, list(groups), threshold, time.perf_counter() - started, predictor.config.ece_bins
    )
    if plots_dir is not None:
        write_plots(labels, probs, threshold, Path(plots_dir), predictor.config.ece_bins)
    return result


def _canvas(title: str, size: int = 480, margin: int = 50) -> tuple[Image.Image, ImageDraw.ImageDraw, Any]:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    span = size - 2 * margin

    def xy(x: float, y: float) -> tuple[float, float]:
        return margin + x * span, size - margin - y * span

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        draw.line([xy(t, 0), (xy(t, 0)[0], xy(t, 0)[1] + 5)], fill="black")
        draw.text((xy(t, 0)[0] - 8, xy(t, 0)[1] + 8), f"{t:.2g}", fill="black")
        draw.line([xy(0, t), (xy(0, t)[0] - 5, xy(0, t)[1])], fill="black")
        draw.text((xy(0, t)[0] - 35, xy(0, t)[1] - 5), f"{t:.2g}", fill="black")
    draw.text((margin, 15), title, fill="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(180, 180, 180))
    return img, draw, xy


def write_plots(labels: np.ndarray, probs: np.ndarray, threshold: float, out_dir: Path, n_bins: int = 10) -> list[Path]:
    """roc.png (operating point marked) and reliability.png, drawn with Pillow."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = metrics.roc_curve(labels, probs)
    sens, spec = metrics.sensitivity_specificity(labels, probs, threshold)
    img, draw, xy = _canvas(f"ROC  AUC {metrics.roc_auc(labels, probs):.3f}   x: 1 - specificity, y: sensitivity")
    draw.line([xy(float(f), float(t)) for f, t in zip(fpr, tpr, strict=True)], fill=(200, 30, 30), width=2)
    px, py = xy(1 - spec, sens)
    draw.ellipse([px - 5, py - 5, px + 5, py + 5], outline="blue", width=2)
    draw.text((px + 8, py + 4), f"threshold {threshold:.3f}: sens {sens:.2f}, spec {spec:.2f}", fill="blue")
    roc_path = out_dir / "roc.png"
    img.save(roc_path)

    ece = metrics.expected_calibration_error(labels, probs, n_bins)
    img, draw, xy = _canvas(f"Reliability  ECE {ece:.3f}   x: predicted, y: observed abnormal rate")
    width = 1.0 / n_bins
    for mean_p, rate, count in metrics.reliability_bins(labels, probs, n_bins):
        b = min(int(mean_p * n_bins), n_bins - 1)
        draw.rectangle(
            [xy(b * width + 0.01, rate), xy((b + 1) * width - 0.01, 0)], fill=(120, 160, 220), outline="black"
        )
        draw.text((xy(b * width + 0.02, rate)[0], xy(0, rate)[1] - 14), str(count), fill="black")
        cx, cy = xy(mean_p, rate)
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill="red")
    rel_path = out_dir / "reliability.png"
    img.save(rel_path)
    return [roc_path, rel_path]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of <image_id>.png|.dcm")
    parser.add_argument("--labels", required=True, help="CSV with image_id, patient_id, label (normal/abnormal)")
    parser.add_argument("--model", help="checkpoint (default: the shipped baseline)")
    parser.add_argument("--json", required=True, help="where to write the metrics JSON")
    parser.add_argument("--plots", help="folder for roc.png and reliability.png")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--bilateral",
        action="store_true",
        help="score each breast against the other one (needs patient_id, laterality)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    examples = load_folder(args.images, args.labels)
    predictor = Predictor.load(args.model, device=args.device)
    result = evaluate(predictor, examples, plots_dir=args.plots, batch_size=args.batch_size, bilateral=args.bilateral)
    result["seconds"] = round(time.perf_counter() - started, 3)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: result[k] for k in KEYS}, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in KEYS}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
