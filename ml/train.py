"""Training: frozen ImageNet backbone features, a small patch head trained on top.

On two CPU cores a whole-image fine-tune of 216 mammograms memorises them, so the
backbone is frozen: each image (and a few augmented views of it) goes through the
backbone once, and the patch head then trains in seconds per epoch with
image-level labels plus patch-level labels from the finding positions and radii.

    python -m ml.train --images DIR --labels images.csv --findings findings.csv \
        --out ml/weights/baseline.pt --cv 5 --seed 0

`fit()` is the function the portal's retraining job calls with its own Examples.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml import metrics
from ml.checkpoint import make_checkpoint, save_checkpoint
from ml.config import ModelConfig
from ml.data import Example, contralateral, load_folder, patient_folds, patient_split, summarize
from ml.inference import bilateral_logits, load_image
from ml.model import MammoNet, breast_cells, build_model, pool_top_k
from ml.preprocess import Geometry, length_to_input, point_to_input, preprocess

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Features:
    """Backbone output for one example: one feature map per augmented view."""

    views: list[torch.Tensor]  # each (C, h, w) float16
    valid: list[torch.Tensor]  # each (h, w) bool: cells inside the breast
    targets: list[torch.Tensor]  # each (h, w) float32: 1 lesion, 0 normal tissue, -1 unknown
    label: int
    patient_id: str


def _view(image: np.ndarray, view: str) -> np.ndarray:
    if view == "orig":
        return image
    if view == "vflip":
        return np.ascontiguousarray(image[::-1])
    if view.startswith("gamma"):
        return np.power(image, float(view[5:]), dtype=np.float32)
    raise ValueError(f"unknown augmentation view {view!r}")


def patch_targets(example: Example, geometry: Geometry, grid: tuple[int, int], config: ModelConfig) -> np.ndarray:
    """Per-cell target: normal breast 0 everywhere; abnormal 1 inside findings, else -1 (unknown)."""
    rows, cols = grid
    if not example.label:
        return np.zeros(grid, dtype=np.float32)
    target = np.full(grid, -1.0, dtype=np.float32)
    in_rows, in_cols = geometry.input_shape
    cell_h, cell_w = in_rows / rows, in_cols / cols
    yy, xx = np.meshgrid((np.arange(rows) + 0.5) * cell_h, (np.arange(cols) + 0.5) * cell_w, indexing="ij")
    for x, y, radius in example.findings:
        cx, cy = point_to_input(x, y, geometry)
        r = max(length_to_input(radius, geometry) * config.finding_radius_factor, 0.5 * max(cell_h, cell_w))
        target[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 1.0
        # The cell holding the centre is positive even when the lesion falls between cell centres.
        target[min(max(int(cy // cell_h), 0), rows - 1), min(max(int(cx // cell_w), 0), cols - 1)] = 1.0
    return target


def _cache_key(example: Example, config: ModelConfig, view: str) -> str:
    text = json.dumps(
        [
            example.image_path,
            example.laterality,
            config.preprocess_version,
            config.backbone,
            config.feature_layer,
            config.input_height,
            config.input_width,
            view,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _light_geometry(values: list[int]) -> Geometry:
    """The parts of a Geometry that map points (cached beside the features)."""
    rows, cols, flipped, top, bottom, left, right, r_rows, r_cols, in_rows, in_cols = values
    return Geometry(
        original_shape=(rows, cols),
        flipped=bool(flipped),
        box=(top, bottom, left, right),
        resized_shape=(r_rows, r_cols),
        input_shape=(in_rows, in_cols),
        mask=np.ones((1, 1), bool),
        mask_factor=1,
    )


def _geometry_values(g: Geometry) -> list[int]:
    return [*g.original_shape, int(g.flipped), *g.box, *g.resized_shape, *g.input_shape]


def extract_features(
    model: MammoNet,
    examples: Sequence[Example],
    config: ModelConfig,
    views: Sequence[str] | None = None,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> list[Features]:
    """Run the frozen backbone once per example and view (optionally cached on disk).

    Patch targets are computed from the findings each time, so a cache stays valid
    when labels or findings change.
    """
    views = list(views if views is not None else config.augment_views)
    model.eval()
    out: list[Features] = []
    bar = tqdm(examples, desc="features", unit="img", file=sys.stderr, disable=len(examples) < 20)
    for n, ex in enumerate(bar):
        prep = None
        feats, valids, targets = [], [], []
        for view in views:
            path = Path(cache_dir) / f"{_cache_key(ex, config, view)}.pt" if cache_dir else None
            stored = torch.load(path, weights_only=True) if path is not None and path.exists() else {}
            if "geometry" in stored:
                feat, valid, geometry = stored["feat"], stored["valid"], _light_geometry(stored["geometry"].tolist())
            else:
                if prep is None:
                    prep = preprocess(load_image(ex.image_path), ex.laterality, config)
                geometry = prep.geometry
                x = torch.from_numpy(_view(prep.image, view)).view(1, 1, *prep.image.shape)
                with torch.inference_mode():
                    f = model.features(x.contiguous(memory_format=torch.channels_last))
                    valid = breast_cells(x, f.shape[-2:])[0, 0]
                feat = f[0].to(torch.float16).contiguous()
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    values = torch.tensor(_geometry_values(geometry))
                    torch.save({"feat": feat, "valid": valid, "geometry": values}, path)
            target = torch.from_numpy(patch_targets(ex, geometry, tuple(feat.shape[-2:]), config))
            if view == "vflip":
                target = target.flip(0)
            feats.append(feat)
            valids.append(valid)
            targets.append(target)
        out.append(Features(feats, valids, targets, int(ex.label), ex.patient_id))
        if progress:
            progress({"stage": "features", "done": n + 1, "total": len(examples)})
    return out


def _batch(items: Sequence[Features], view_idx: Sequence[int]) -> tuple[torch.Tensor, ...]:
    feats = torch.stack([it.views[v] for it, v in zip(items, view_idx, strict=True)]).float()
    valid = torch.stack([it.valid[v] for it, v in zip(items, view_idx, strict=True)]).unsqueeze(1)
    target = torch.stack([it.targets[v] for it, v in zip(items, view_idx, strict=True)]).unsqueeze(1)
    labels = torch.tensor([it.label for it in items], dtype=torch.float32)
    return feats, valid, target, labels


def head_logits(model: MammoNet, items: Sequence[Features], batch_size: int = 32) -> np.ndarray:
    """Image logits from cached features of the original view."""
    model.head.eval()
    logits = []
    with torch.inference_mode():
        for s in range(0, len(items), batch_size):
            feats, valid, _, _ = _batch(items[s : s + batch_size], [0] * len(items[s : s + batch_size]))
            logits.append(pool_top_k(model.head(feats), valid, model.config.pool_top_k))
    return torch.cat(logits).numpy() if logits else np.zeros(0)


def _loss(model: MammoNet, feats, valid, target, labels, config: ModelConfig, pos_weight: float) -> torch.Tensor:
    patch = model.head(feats)
    logit = pool_top_k(patch, valid, config.pool_top_k)
    weights = torch.where(labels > 0, torch.tensor(pos_weight), torch.tensor(1.0))
    loss = F.binary_cross_entropy_with_logits(logit, labels, weight=weights)
    if config.patch_loss_weight > 0:
        known = (target >= 0) & valid
        pos, neg = known & (target > 0), known & (target == 0)
        terms = []
        # Positive and negative cells weigh equally: lesion cells are a few in thousands.
        if pos.any():
            terms.append(F.binary_cross_entropy_with_logits(patch[pos], target[pos]))
        if neg.any():
            terms.append(F.binary_cross_entropy_with_logits(patch[neg], target[neg]))
        if terms:
            loss = loss + config.patch_loss_weight * sum(terms) / len(terms)
    return loss


def train_head(
    model: MammoNet,
    train: Sequence[Features],
    val: Sequence[Features] | None,
    config: ModelConfig,
    seed: int = 0,
    epochs: int | None = None,
    progress: Progress | None = None,
    desc: str = "train",
) -> dict[str, Any]:
    """Train the head in place; with `val`, keep the epoch with the best validation AUC."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    epochs = epochs or config.epochs
    n_pos = sum(it.label for it in train)
    pos_weight = (len(train) - n_pos) / max(n_pos, 1) if config.balance_classes else 1.0
    params = [p for p in model.head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    best = {"auc": -1.0, "epoch": 0, "state": copy.deepcopy(model.head.state_dict())}
    history = []
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", file=sys.stderr, leave=False)
    for epoch in bar:
        model.head.train()
        order = torch.randperm(len(train), generator=generator).tolist()
        total = 0.0
        for s in range(0, len(order), config.batch_size):
            items = [train[i] for i in order[s : s + config.batch_size]]
            views = rng.integers(0, len(items[0].views), len(items)).tolist()
            feats, valid, target, labels = _batch(items, views)
            loss = _loss(model, feats, valid, target, labels, config, pos_weight)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(items)
        record = {"stage": "train", "epoch": epoch, "epochs": epochs, "loss": total / len(train)}
        if val:
            record["val_auc"] = metrics.roc_auc([it.label for it in val], head_logits(model, val))
            if record["val_auc"] > best["auc"]:
                best = {"auc": record["val_auc"], "epoch": epoch, "state": copy.deepcopy(model.head.state_dict())}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", val_auc=f"{record.get('val_auc', float('nan')):.3f}")
        if progress:
            progress(record)
        if val and epoch - best["epoch"] >= config.patience:
            break
    if val:
        model.head.load_state_dict(best["state"])
    else:
        best = {"auc": float("nan"), "epoch": epochs}
    return {"best_epoch": best["epoch"], "best_val_auc": best["auc"], "history": history}


def operating_point(
    labels: Sequence[int],
    logits: np.ndarray,
    groups: Sequence[str],
    config: ModelConfig,
    calibration: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Calibration, threshold at the target sensitivity and the metrics they give on these predictions."""
    y = np.asarray(labels)
    a, b = calibration or metrics.fit_platt(logits, y, fit_bias=config.calibration == "platt")
    probs = metrics.calibrate(logits, a, b)
    threshold = metrics.threshold_for_sensitivity(y, probs, config.target_sensitivity)
    sens, spec = metrics.sensitivity_specificity(y, probs, threshold)
    low, high = metrics.bootstrap_auc_ci(y, probs, groups)
    return {
        "calibration": (a, b),
        "threshold": threshold,
        "metrics": {
            "n": int(y.size),
            "n_abnormal": int(y.sum()),
            "auc": metrics.roc_auc(y, logits),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "sensitivity": sens,
            "specificity": spec,
            "ece": metrics.expected_calibration_error(y, probs, config.ece_bins),
        },
    }


def bilateral_operating_point(
    examples: Sequence[Example], logits: np.ndarray, config: ModelConfig
) -> dict[str, Any] | None:
    """Calibration, threshold and metrics of the exam-aware logits (images with a partner only)."""
    exam = bilateral_logits(logits, contralateral(examples), config.bilateral_weight)
    has = ~np.isnan(exam)
    y = np.array([ex.label for ex in examples])[has]
    if y.size == 0 or y.min() == y.max():
        return None
    groups = [ex.patient_id for ex, h in zip(examples, has, strict=True) if h]
    op = operating_point(y, exam[has], groups, config)
    a, b = op["calibration"]
    return {
        "calibration": {"a": a, "b": b},
        "threshold": op["threshold"],
        "weight": config.bilateral_weight,
        "metrics": op["metrics"],
    }


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _init_model(config: ModelConfig, init_checkpoint: dict[str, Any] | str | Path | None, seed: int) -> MammoNet:
    if init_checkpoint is None:
        return build_model(config, seed=seed)
    if not isinstance(init_checkpoint, dict):
        from ml.checkpoint import load_checkpoint

        init_checkpoint = load_checkpoint(init_checkpoint)
    return build_model(config, init_checkpoint["state_dict"])


def fit(
    train: Sequence[Example],
    val: Sequence[Example] | None,
    config: ModelConfig | None = None,
    init_checkpoint: dict[str, Any] | str | Path | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train on `train`, stop early and calibrate on `val` (patients never shared); return a checkpoint dict.

    With `val=None` a patient-level split of `train` (config.val_fraction) is made.
    `init_checkpoint` (the current champion, dict or path) starts the head from its
    weights; with `config=None` its config is used too.
    """
    if config is None and init_checkpoint is not None:
        if not isinstance(init_checkpoint, dict):
            from ml.checkpoint import load_checkpoint

            init_checkpoint = load_checkpoint(init_checkpoint)
        config = ModelConfig.from_dict(init_checkpoint["config"])  # continue the champion as it was configured
    config = config or ModelConfig()
    if not val:
        train, val = patient_split(train, config.val_fraction, seed)
    shared = {ex.patient_id for ex in train} & {ex.patient_id for ex in val}
    if shared:
        raise ValueError(f"{len(shared)} patients are in both training and validation data")
    _seed_all(seed)
    started = time.time()
    model = _init_model(config, init_checkpoint, seed)
    train_f = extract_features(model, train, config, cache_dir=cache_dir, progress=progress)
    val_f = extract_features(model, val, config, views=["orig"], cache_dir=cache_dir, progress=progress)
    result = train_head(model, train_f, val_f, config, seed=seed, progress=progress)
    logits = head_logits(model, val_f)
    op = operating_point([ex.label for ex in val], logits, [ex.patient_id for ex in val], config)
    return make_checkpoint(
        model,
        config,
        bilateral=bilateral_operating_point(val, logits, config),
        calibration=op["calibration"],
        threshold=op["threshold"],
        operating_point=_operating_point_record(op, config, "validation split"),
        metrics={"validation": op["metrics"], "best_epoch": result["best_epoch"]},
        training_data={"train": summarize(train), "validation": summarize(val)},
        training={
            "seed": seed,
            "command": command,
            "seconds": round(time.time() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": result["history"],
        },
    )


def cross_validate(
    examples: Sequence[Example],
    features: Sequence[Features],
    config: ModelConfig,
    n_folds: int = 5,
    seed: int = 0,
    model: MammoNet | None = None,
) -> dict[str, Any]:
    """Patient-level k-fold CV on cached features: out-of-fold logits and each fold's best epoch.

    Inside each training part a further patient split picks the epoch, so the
    held-out fold never influences its own model.
    """
    model = model or build_model(config, seed=seed)
    initial = copy.deepcopy(model.head.state_dict())
    folds = patient_folds(examples, n_folds, seed)
    oof = np.zeros(len(examples))
    epochs = []
    for k, held in enumerate(folds):
        rest = np.setdiff1d(np.arange(len(examples)), held)
        inner = patient_folds([examples[i] for i in rest], max(2, n_folds - 1), seed + 1 + k)[0]
        inner_val = rest[inner]
        inner_train = np.setdiff1d(rest, inner_val)
        torch.manual_seed(seed + k)
        model.head.load_state_dict(initial)
        for m in model.head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        result = train_head(
            model,
            [features[i] for i in inner_train],
            [features[i] for i in inner_val],
            config,
            seed=seed + k,
            desc=f"fold {k + 1}/{n_folds}",
        )
        epochs.append(result["best_epoch"])
        oof[held] = head_logits(model, [features[i] for i in held])
    return {"oof_logits": oof, "best_epochs": epochs, "folds": [f.tolist() for f in folds]}


def cross_fitted_probabilities(
    labels: np.ndarray, logits: np.ndarray, folds: Sequence[Sequence[int]], config: ModelConfig
) -> np.ndarray:
    """Each fold's probabilities from a calibration fitted on the other folds (honest ECE)."""
    probs = np.zeros(len(labels))
    for held in folds:
        rest = np.setdiff1d(np.arange(len(labels)), held)
        a, b = metrics.fit_platt(logits[rest], labels[rest], fit_bias=config.calibration == "platt")
        probs[held] = metrics.calibrate(logits[held], a, b)
    return probs


def train_with_cv(
    examples: Sequence[Example],
    config: ModelConfig,
    n_folds: int = 5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Cross-validate, then train on every example for the CV's median best epoch.

    Calibration and the operating point come from the pooled out-of-fold
    predictions, so no example is used twice and none is wasted on a fixed split.
    """
    _seed_all(seed)
    started = time.time()
    model = build_model(config, seed=seed)
    features = extract_features(model, examples, config, cache_dir=cache_dir)
    cv = cross_validate(examples, features, config, n_folds, seed, model)
    y = np.array([ex.label for ex in examples])
    groups = [ex.patient_id for ex in examples]
    op = operating_point(y, cv["oof_logits"], groups, config)
    honest = cross_fitted_probabilities(y, cv["oof_logits"], cv["folds"], config)
    op["metrics"]["ece_cross_fitted"] = metrics.expected_calibration_error(y, honest, config.ece_bins)
    epochs = max(1, int(np.median(cv["best_epochs"])))
    _seed_all(seed)
    for m in model.head.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    final = train_head(model, features, None, config, seed=seed, epochs=epochs, desc="final")
    return make_checkpoint(
        model,
        config,
        bilateral=bilateral_operating_point(examples, cv["oof_logits"], config),
        calibration=op["calibration"],
        threshold=op["threshold"],
        operating_point=_operating_point_record(op, config, f"{n_folds}-fold patient CV (out-of-fold)"),
        metrics={"cross_validation": op["metrics"], "best_epochs": cv["best_epochs"], "final_epochs": epochs},
        training_data={
            "train": summarize(examples),
            "image_ids_sha256": hashlib.sha256(
                ",".join(sorted(ex.image_id or ex.image_path for ex in examples)).encode()
            ).hexdigest()[:16],
        },
        training={
            "seed": seed,
            "command": command,
            "seconds": round(time.time() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": final["history"],
        },
    )


def _operating_point_record(op: dict, config: ModelConfig, source: str) -> dict:
    """What a checkpoint says about its threshold: the target, what it reached, on which data."""
    return {
        "target_sensitivity": config.target_sensitivity,
        "sensitivity": op["metrics"]["sensitivity"],
        "specificity": op["metrics"]["specificity"],
        "source": source,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", required=True, help="folder of <image_id>.png|.dcm")
    parser.add_argument("--labels", required=True, help="images.csv: image_id, patient_id, laterality, label")
    parser.add_argument("--findings", help="findings.csv: image_id, x, y, radius (patch supervision)")
    parser.add_argument("--out", required=True, help="checkpoint path to write")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default from ModelConfig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv", type=int, default=0, help="k > 1: k-fold patient CV, then train on all data")
    parser.add_argument("--val-fraction", type=float, help="share of patients for validation (without --cv)")
    parser.add_argument("--cache-dir", help="cache backbone features here between runs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = ModelConfig()
    if args.epochs:
        config.epochs = args.epochs
    if args.val_fraction:
        config.val_fraction = args.val_fraction
    examples = load_folder(args.images, args.labels, args.findings)
    command = "python -m ml.train " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.cv and args.cv > 1:
        checkpoint = train_with_cv(examples, config, args.cv, args.seed, args.cache_dir, command)
    else:
        checkpoint = fit(examples, None, config, seed=args.seed, cache_dir=args.cache_dir, command=command)
    save_checkpoint(checkpoint, args.out)
    summary = {k: checkpoint[k] for k in ("threshold", "calibration", "operating_point")}
    summary["metrics"] = {k: v for k, v in checkpoint["metrics"].items()}
    print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
