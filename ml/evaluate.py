"""Evaluate a checkpoint on a labelled folder, at every level the portal serves.

    python -m ml.evaluate --images DIR --labels CSV [--findings CSV] [--model PATH] --json OUT [--plots DIR]

JSON: the image-level keys n, n_abnormal, auc, auc_ci_low, auc_ci_high (bootstrap by
woman), threshold, sensitivity, specificity (at the model's stored operating
point), ece, seconds; `levels`: {image, breast, exam} x {all, <source>...} with the
same figures (per source when the labels file has a `source` column or several
sources are given); `pointing_game` when findings are given; `images`: per image
image_id, patient_id, laterality, view, source, label, probability, logit and the
top regions. Breast and exam probabilities come from the checkpoint's exam model
(ml.exam), exactly as the portal computes them. `evaluate()` is the same as a
function for the portal's promotion rule.
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
from ml.data import Example, load_folder
from ml.inference import PredictionResult, Predictor, load_image
from ml.operating import exam_flag_figures, source_kind
from ml.report import level_rows, pointing_game, report

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


def predict_results(predictor: Predictor, examples: Sequence[Example], batch_size: int = 8) -> list[PredictionResult]:
    """The model's result for each example (images decoded a batch at a time)."""
    results: list[PredictionResult] = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        results.extend(
            predictor.predict([(load_image(ex.image_path), ex.laterality) for ex in chunk], batch_size=batch_size)
        )
    return results


def predict_examples(
    predictor: Predictor, examples: Sequence[Example], batch_size: int = 8, cache_dir: str | Path | None = None
) -> np.ndarray:
    """Uncalibrated logits, one per example.

    With `cache_dir`, a model whose backbone was frozen in training (its trunk is the
    ImageNet one) on the CPU reads the trunk's features from the training feature
    cache and runs only its head: the nightly job scores the same locked women every
    night, and on two cores the trunk is nearly all of the time. The cached features
    were computed with fp32 ImageNet weights, the served trunk holds them in fp16:
    logits agree to about 1e-3.
    """
    if cache_dir is not None and predictor.config.freeze_backbone and predictor.device.type == "cpu":
        from ml.features import extract_features
        from ml.fit import head_logits

        model = predictor.model
        features = extract_features(model, examples, predictor.config, views=["orig"], cache_dir=cache_dir)
        return np.asarray(head_logits(model, features), dtype=np.float64)
    return np.asarray([r.logit for r in predict_results(predictor, examples, batch_size)])


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


def _hit(example: Example, result: PredictionResult) -> bool | None:
    if not example.label or not example.findings or result.peak is None:
        return None
    x, y = result.peak
    return any((x - fx) ** 2 + (y - fy) ** 2 <= max(r, 1.0) ** 2 for fx, fy, r in example.findings)


def evaluate(
    predictor_or_model: Predictor | dict[str, Any] | str | Path | None,
    examples: Sequence[Example],
    plots_dir: str | Path | None = None,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Metrics of a model (Predictor, checkpoint dict or path; None = shipped baseline) on examples.

    The image-level figures are the top-level keys; `levels`, `pointing_game` and
    `images` as in the module docstring.
    """
    started = time.perf_counter()
    predictor = _predictor(predictor_or_model)
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    groups = [ex.patient_id for ex in examples]
    results = predict_results(predictor, examples, batch_size)
    logits = np.asarray([r.logit for r in results])
    # One source kind (a held-out film or digital set): its own calibration, exam model and thresholds.
    kinds = {source_kind(ex.source) for ex in examples if ex.source}
    kind = kinds.pop() if len(kinds) == 1 and all(ex.source for ex in examples) else None
    op = predictor.operating(kind)
    a, b = op["calibration"]
    probs = metrics.sigmoid(a * logits + b)
    thresholds = op["thresholds"]
    result = summarize_predictions(
        labels, probs, groups, thresholds["image"], time.perf_counter() - started, predictor.config.ece_bins
    )
    result["source_kind"] = op["kind"]
    result["thresholds"] = thresholds
    rows = level_rows(examples, probs, op["exam_model"], logits)
    result["levels"] = {
        level: report({level: rows[level]}, thresholds["image" if level == "image" else "breast"], n_bins)[level]
        for level in rows
        for n_bins in [predictor.config.ece_bins]
    }
    for level in ("exam", "exam_both_breasts"):  # the served rule: an exam is flagged when any breast is
        both = set(rows["exam_both_breasts"]["keys"]) if level == "exam_both_breasts" else None
        result["levels"][level]["all"] = exam_flag_figures(rows["breast"], thresholds["breast"], rows["exam"], both)
    threshold = thresholds["image"]
    if any(ex.findings for ex in examples):
        result["pointing_game"] = pointing_game([_hit(ex, r) for ex, r in zip(examples, results, strict=True)])
    result["images"] = [
        {
            "image_id": ex.image_id or Path(ex.image_path).stem,
            "patient_id": ex.patient_id,
            "laterality": ex.laterality,
            "view": ex.view,
            "source": ex.source,
            "label": int(ex.label),
            "probability": float(p),
            "logit": float(r.logit),
            "regions": r.regions,
        }
        for ex, p, r in zip(examples, probs, results, strict=True)
    ]
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
    parser.add_argument("--images", required=True, help="folder of <image_id>.png|.jpg|.dcm")
    parser.add_argument(
        "--labels", required=True, help="CSV: image_id, label (normal/abnormal), patient_id, laterality, view, source"
    )
    parser.add_argument("--findings", help="findings.csv: image_id, x, y, radius (for the pointing game)")
    parser.add_argument("--source", default="", help="source name for every row without a source column")
    parser.add_argument("--model", help="checkpoint (default: the shipped baseline)")
    parser.add_argument("--json", required=True, help="where to write the metrics JSON")
    parser.add_argument("--plots", help="folder for roc.png and reliability.png")
    parser.add_argument("--device", help="cpu, cuda, ... (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    examples = load_folder(args.images, args.labels, args.findings, source=args.source)
    predictor = Predictor.load(args.model, device=args.device)
    result = evaluate(predictor, examples, plots_dir=args.plots, batch_size=args.batch_size)
    result["seconds"] = round(time.perf_counter() - started, 3)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps({k: result[k] for k in KEYS}, indent=2))
    print(json.dumps(result["levels"], indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
