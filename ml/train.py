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
import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ml import metrics
from ml.checkpoint import make_checkpoint, save_checkpoint
from ml.config import ModelConfig
from ml.data import Example, load_folder, patient_folds, patient_split, summarize
from ml.exam import ExamModel, fit_exam_model, level_predictions
from ml.inference import load_image
from ml.model import MammoNet, PatchHead, breast_cells, build_model, pool_top_k
from ml.operating import DIGITAL, fit_sources, source_kind
from ml.preprocess import Geometry, length_to_input, point_to_input, preprocess
from ml.regions import box_share, peak_point, point_in_region, top_regions
from ml.report import cross_fitted, pointing_game, report

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Features:
    """Backbone output for one example: one feature map per augmented view."""

    views: list[torch.Tensor]  # each (C, h, w) float16
    valid: list[torch.Tensor]  # each (h, w) bool: cells inside the breast
    targets: list[torch.Tensor]  # each (h, w) float32: 1 lesion, 0 normal tissue, -1 unknown
    label: int
    patient_id: str
    source: str = ""
    geometry: Geometry | None = None  # of the original view: maps patch cells to original pixels
    findings: tuple[tuple[float, float, float], ...] = ()


def example_weights(items: Sequence[Features], config: ModelConfig) -> torch.Tensor:
    """Loss weight per example: sources weigh the same (balance_sources), classes balanced within each source
    (balance_classes); the mean weight is 1."""
    sources = sorted({it.source for it in items})
    weights = torch.ones(len(items))
    for source in sources:
        idx = [i for i, it in enumerate(items) if it.source == source]
        share = (len(items) / (len(sources) * len(idx))) if config.balance_sources else 1.0
        n_pos = sum(items[i].label for i in idx)
        n_neg = len(idx) - n_pos
        for i in idx:
            w = share
            if config.balance_classes and n_pos and n_neg:
                w *= len(idx) / (2 * (n_pos if items[i].label else n_neg))
            weights[i] = w
    return weights * (len(items) / float(weights.sum()))


def _aspect(view: str) -> float:
    return float(view[len("aspect") :])


def stretch_width(image: np.ndarray, factor: float) -> np.ndarray:
    """The image with its width scaled by `factor` (height kept): the RSNA re-export stretched every image
    to a square, so a breast's aspect ratio varies by source; training on both aspects copes with it."""
    from PIL import Image as PILImage

    rows, cols = image.shape
    img = PILImage.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(img.resize((max(1, round(cols * factor)), rows), PILImage.Resampling.BILINEAR), np.float32)


def stretched_example(example: Example, factor: float) -> Example:
    """The example's findings where they fall on `stretch_width(image, factor)`."""
    findings = tuple((x * factor, y, r) for x, y, r in example.findings)
    return dataclasses.replace(example, findings=findings)


def _view(image: np.ndarray, view: str) -> np.ndarray:
    """The preprocessed input as seen by one augmentation view (aspect views are preprocessed apart)."""
    if view == "orig" or view.startswith("aspect"):
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


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: the feature cache is keyed by content, so the same image imported into the
    portal's media (a byte-identical copy under another name) reuses features computed from the original."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_key(example: Example, config: ModelConfig, view: str) -> str:
    text = json.dumps(
        [
            file_digest(example.image_path),
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
        first_geometry = None
        feats, valids, targets = [], [], []
        for view in views:
            path = Path(cache_dir) / f"{_cache_key(ex, config, view)}.pt" if cache_dir else None
            stored = torch.load(path, weights_only=True) if path is not None and path.exists() else {}
            if "geometry" in stored:
                feat, valid, geometry = stored["feat"], stored["valid"], _light_geometry(stored["geometry"].tolist())
            else:
                if view.startswith("aspect"):  # a different picture of the breast: preprocessed on its own
                    shown = preprocess(stretch_width(load_image(ex.image_path), _aspect(view)), ex.laterality, config)
                    pixels = shown.image
                else:
                    if prep is None:
                        prep = preprocess(load_image(ex.image_path), ex.laterality, config)
                    shown, pixels = prep, _view(prep.image, view)
                geometry = shown.geometry
                x = torch.from_numpy(pixels).view(1, 1, *pixels.shape)
                with torch.inference_mode():
                    f = model.features(x.contiguous(memory_format=torch.channels_last))
                    valid = breast_cells(x, f.shape[-2:])[0, 0]
                feat = f[0].to(torch.float16).contiguous()
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    values = torch.tensor(_geometry_values(geometry))
                    torch.save({"feat": feat, "valid": valid, "geometry": values}, path)
            shown_ex = stretched_example(ex, _aspect(view)) if view.startswith("aspect") else ex
            target = torch.from_numpy(patch_targets(shown_ex, geometry, tuple(feat.shape[-2:]), config))
            if view == "vflip":
                target = target.flip(0)
            feats.append(feat)
            valids.append(valid)
            targets.append(target)
            first_geometry = first_geometry or geometry
        out.append(
            Features(feats, valids, targets, int(ex.label), ex.patient_id, ex.source, first_geometry, ex.findings)
        )
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


def mean_source_auc(items: Sequence[Features], logits: np.ndarray) -> float:
    """Mean over sources of the image-level AUC (a source with one class only is skipped)."""
    aucs = []
    for source in sorted({it.source for it in items}):
        idx = [i for i, it in enumerate(items) if it.source == source]
        y = [items[i].label for i in idx]
        if 0 < sum(y) < len(y):
            aucs.append(metrics.roc_auc(y, logits[idx]))
    return float(np.mean(aucs)) if aucs else float("nan")


def _loss(model: MammoNet, feats, valid, target, labels, config: ModelConfig, weights: torch.Tensor) -> torch.Tensor:
    patch = model.head(feats)
    logit = pool_top_k(patch, valid, config.pool_top_k)
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


@dataclass
class Projection:
    """PCA of the backbone's channels over breast cells: the head trains on `k` components, then is folded
    back into a head on every channel (the head's first layer is linear, so nothing is lost in serving)."""

    mean: torch.Tensor  # (C,)
    components: torch.Tensor  # (k, C), orthonormal rows


def fit_projection(items: Sequence[Features], k: int, max_cells: int = 20000, seed: int = 0) -> Projection | None:
    """Principal components of breast-cell features (unsupervised: no label is used). None when k is 0 or
    not smaller than the channel count."""
    if not items or k <= 0 or k >= items[0].views[0].shape[0]:
        return None
    generator = torch.Generator().manual_seed(seed)
    per_item = max(1, max_cells // len(items))
    cells = []
    for it in items:
        feat = it.views[0].flatten(1)[:, it.valid[0].flatten()].T  # (cells inside the breast, C)
        if feat.shape[0] == 0:
            continue
        pick = torch.randperm(feat.shape[0], generator=generator)[:per_item]
        cells.append(feat[pick].float())
    data = torch.cat(cells)
    mean = data.mean(dim=0)
    _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
    return Projection(mean=mean, components=v[:k].contiguous())


def project(items: Sequence[Features], projection: Projection | None) -> list[Features]:
    """The items with every view's channels projected (fp16, like the cache); unchanged without a projection."""
    if projection is None:
        return list(items)
    weight = projection.components  # (k, C)
    shift = weight @ projection.mean  # (k,)
    out = []
    for it in items:
        views = [
            (torch.einsum("kc,chw->khw", weight, v.float()) - shift[:, None, None]).to(torch.float16) for v in it.views
        ]
        out.append(dataclasses.replace(it, views=views))
    return out


def head_for(config: ModelConfig, channels: int) -> SimpleNamespace:
    """A stand-in 'model' whose head trains on `channels` (projected) features: train_head, head_logits and
    pointing_hit only use `.head` and `.config`."""
    return SimpleNamespace(head=PatchHead(channels, config.head_hidden, config.head_dropout), config=config)


def unfold_head(small, projection: Projection | None, model: MammoNet) -> None:
    """Start a head on projected features from the model's head (fine-tuning a champion): its first layer
    restricted to the components, with the mean feature moved into the bias."""
    state = copy.deepcopy(model.head.state_dict())
    if projection is not None:
        first = next(k for k in state if k.endswith(".weight"))
        bias = first[: -len("weight")] + "bias"
        w = state[first][:, :, 0, 0]  # (out, C)
        state[bias] = state[bias] + w @ projection.mean
        state[first] = (w @ projection.components.T)[:, :, None, None]
    small.head.load_state_dict(state)


def fold_head(small, projection: Projection | None, model: MammoNet) -> None:
    """Copy a head trained on projected features into the model's head on every channel."""
    state = copy.deepcopy(small.head.state_dict())
    if projection is not None:
        first = next(k for k in state if k.endswith(".weight"))  # the first 1x1 convolution
        bias = first[: -len("weight")] + "bias"
        w = state[first][:, :, 0, 0]  # (out, k)
        state[bias] = state[bias] - w @ (projection.components @ projection.mean)
        state[first] = (w @ projection.components)[:, :, None, None]
    model.head.load_state_dict(state)


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
    weights = example_weights(train, config)
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
            chosen = order[s : s + config.batch_size]
            items = [train[i] for i in chosen]
            views = [int(rng.integers(0, len(it.views))) for it in items]  # items may have different views
            feats, valid, target, labels = _batch(items, views)
            loss = _loss(model, feats, valid, target, labels, config, weights[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(items)
        record = {"stage": "train", "epoch": epoch, "epochs": epochs, "loss": total / len(train)}
        if val:
            record["val_auc"] = mean_source_auc(val, head_logits(model, val))
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


def exam_levels(examples: Sequence[Example], logits: np.ndarray, config: ModelConfig) -> dict[str, Any]:
    """Fit the exam model (ml.exam) on these logits and report breast- and exam-level metrics at `threshold`.

    The returned dict holds the model ("exam_model") and, per level, the metrics of
    its probabilities on the same examples (optimistic by the few parameters fitted:
    train_with_cv reports cross-fitted figures as well).
    """
    exam_ids = [ex.exam for ex in examples]
    lats = [ex.laterality for ex in examples]
    labels = [ex.label for ex in examples]
    model = fit_exam_model(logits, exam_ids, lats, labels)
    return {"exam_model": model.to_dict(), "levels": _level_metrics(model, examples, logits, config)}


def _level_metrics(
    model: ExamModel, examples: Sequence[Example], logits: np.ndarray, config: ModelConfig
) -> dict[str, Any]:
    levels = level_predictions(
        model, logits, [ex.exam for ex in examples], [ex.laterality for ex in examples], [ex.label for ex in examples]
    )
    patient_of_exam = {ex.exam: ex.patient_id for ex in examples}
    out = {}
    for level, data in levels.items():
        y = np.asarray(data["labels"])
        if y.size == 0 or y.min() == y.max():
            continue
        keys = data["keys"]
        groups = [patient_of_exam[k[0] if isinstance(k, tuple) else k] for k in keys]
        low, high = metrics.bootstrap_auc_ci(y, data["probabilities"], groups)
        out[level] = {
            "n": int(y.size),
            "n_abnormal": int(y.sum()),
            "auc": metrics.roc_auc(y, data["probabilities"]),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "ece": metrics.expected_calibration_error(y, data["probabilities"], config.ece_bins),
        }
    return out


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
    projection = fit_projection(train_f, config.feature_projection, seed=seed)
    small = head_for(config, (projection.components if projection is not None else train_f[0].views[0]).shape[0])
    if init_checkpoint is not None:
        unfold_head(small, projection, model)  # continue the champion's head where it left off
    small_val = project(val_f, projection)
    result = train_head(small, project(train_f, projection), small_val, config, seed=seed, progress=progress)
    fold_head(small, projection, model)
    logits = head_logits(small, small_val)
    op = operating_point([ex.label for ex in val], logits, [ex.patient_id for ex in val], config)
    levels = exam_levels(val, logits, config)
    sources = _sources_on_split(val, logits, config, seed)
    return make_checkpoint(
        model,
        config,
        exam_model=levels["exam_model"],
        calibration=op["calibration"],
        threshold=op["threshold"],
        sources=sources,
        operating_point=_operating_point_record(op, config, "validation split"),
        metrics={"validation": op["metrics"], "levels": levels["levels"], "best_epoch": result["best_epoch"]},
        training_data={"train": summarize(train), "validation": summarize(val)},
        training={
            "seed": seed,
            "command": command,
            "seconds": round(time.time() - started, 1),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "history": result["history"],
        },
    )


def _sources_on_split(val: Sequence[Example], logits: np.ndarray, config: ModelConfig, seed: int) -> dict:
    """Per-source calibration, exam models and nested thresholds on a validation split (3 folds by woman inside
    it); {} where the split is too small to fit them (a source kind needs both classes in every part)."""
    try:
        folds = patient_folds(val, 3, seed)
        platt = config.calibration == "platt"
        return fit_sources(val, logits, folds, config.target_sensitivity, platt, config.ece_bins)
    except (ValueError, ZeroDivisionError, IndexError, KeyError):
        return {}


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
    projection = fit_projection(features, config.feature_projection, seed=seed)
    small_features = project(features, projection)
    small = head_for(config, small_features[0].views[0].shape[0])
    folds = patient_folds(examples, n_folds, seed)
    oof = np.zeros(len(examples))
    oof_patches: list[np.ndarray | None] = [None] * len(examples)
    hits: list[bool | None] = [None] * len(examples)
    epochs = []
    for k, held in enumerate(folds):
        rest = np.setdiff1d(np.arange(len(examples)), held)
        inner = patient_folds([examples[i] for i in rest], max(2, n_folds - 1), seed + 1 + k)[0]
        inner_val = rest[inner]
        inner_train = np.setdiff1d(rest, inner_val)
        torch.manual_seed(seed + k)
        for m in small.head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        result = train_head(
            small,
            [small_features[i] for i in inner_train],
            [small_features[i] for i in inner_val],
            config,
            seed=seed + k,
            desc=f"fold {k + 1}/{n_folds}",
        )
        epochs.append(result["best_epoch"])
        oof[held] = head_logits(small, [small_features[i] for i in held])
        for i in held:
            hits[i] = pointing_hit(small, small_features[i])
            with torch.inference_mode():
                oof_patches[i] = small.head(small_features[i].views[0].float().unsqueeze(0))[0, 0].numpy()
    return {
        "oof_logits": oof,
        "best_epochs": epochs,
        "folds": [f.tolist() for f in folds],
        "pointing": hits,
        "oof_patches": oof_patches,
        "projection": projection,
        "small_features": small_features,
    }


def pointing_hit(model, item: Features) -> bool | None:
    """Does the image's most suspicious cell lie on one of its marked findings? None: nothing to check."""
    if not item.label or not item.findings or item.geometry is None:
        return None
    model.head.eval()
    with torch.inference_mode():
        patch = model.head(item.views[0].float().unsqueeze(0))[0, 0].numpy()
    x, y = peak_point(patch, item.valid[0].numpy(), item.geometry)
    return any((x - fx) ** 2 + (y - fy) ** 2 <= max(r, 1.0) ** 2 for fx, fy, r in item.findings)


def region_figures(
    examples: Sequence[Example], features: Sequence[Features], patches: Sequence[np.ndarray | None], kind: str, entry
) -> dict[str, Any]:
    """Out-of-fold regions of one source as served (its calibration and region threshold): how often the top
    region of an abnormal image with a marked finding holds the finding, and box size as a share of the breast."""
    a, b = entry["calibration"]["a"], entry["calibration"]["b"]
    shares, hits, drawn, abnormal = [], [], 0, 0
    for ex, item, patch in zip(examples, features, patches, strict=True):
        if patch is None or source_kind(ex.source) != kind or item.geometry is None:
            continue
        valid = item.valid[0].numpy()
        probs = metrics.calibrate(patch, a, b)
        regions = top_regions(probs, valid, item.geometry, k=1, min_probability=entry["thresholds"]["region"])
        if regions:
            shares.append(box_share(regions[0], int(valid.sum()), item.geometry, patch.shape))
        if ex.label:
            abnormal += 1
            drawn += bool(regions)
            if ex.findings:
                best = top_regions(probs, valid, item.geometry, k=1)[0]
                hits.append(any(point_in_region(fx, fy, best) for fx, fy, _ in ex.findings))
    return {
        "box_share_mean": float(np.mean(shares)) if shares else None,
        "box_share_max": float(np.max(shares)) if shares else None,
        "regions_drawn": len(shares),
        "abnormal_with_region": drawn,
        "abnormal": abnormal,
        "box_pointing": pointing_game(hits) if hits else None,
    }


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
    oof = cv["oof_logits"]
    op, cv_metrics = cv_operating_point(examples, oof, cv["folds"], config)
    cv_metrics["pointing_game"] = pointing_game(cv["pointing"])
    sources = fit_sources(
        examples, oof, cv["folds"], config.target_sensitivity, config.calibration == "platt", config.ece_bins
    )
    for kind, entry in sources.items():
        entry["figures"]["regions"] = region_figures(examples, features, cv["oof_patches"], kind, entry)
    cv_metrics["sources"] = {kind: {k: v for k, v in e.items() if k != "exam_model"} for kind, e in sources.items()}
    default = sources.get(DIGITAL) or next(iter(sources.values()), None)
    if default is not None:  # served when an image's source is not known
        op["calibration"] = (default["calibration"]["a"], default["calibration"]["b"])
        op["exam_model"] = default["exam_model"]
        op["threshold"] = default["thresholds"]["breast"]
    epochs = max(1, int(np.median(cv["best_epochs"])))
    _seed_all(seed)
    small = head_for(config, cv["small_features"][0].views[0].shape[0])
    final = train_head(small, cv["small_features"], None, config, seed=seed, epochs=epochs, desc="final")
    fold_head(small, cv["projection"], model)
    return make_checkpoint(
        model,
        config,
        exam_model=op["exam_model"],
        calibration=op["calibration"],
        threshold=op["threshold"],
        sources=sources,
        operating_point=_operating_point_record(op, config, f"{n_folds}-fold patient CV (cross-fitted, breast level)"),
        metrics={"cross_validation": cv_metrics, "best_epochs": cv["best_epochs"], "final_epochs": epochs},
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


def cv_operating_point(
    examples: Sequence[Example], oof: np.ndarray, folds: Sequence[Sequence[int]], config: ModelConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibrations fitted on all out-of-fold logits (what the final model serves with), the threshold that
    reaches the target sensitivity on the cross-fitted breast-level probabilities, and the cross-fitted
    figures per level and source at that threshold (no example scored by a calibration it helped fit)."""
    y = np.array([ex.label for ex in examples])
    a, b = metrics.fit_platt(oof, y, fit_bias=config.calibration == "platt")
    exam_model = fit_exam_model(oof, [ex.exam for ex in examples], [ex.laterality for ex in examples], y.tolist())
    _, rows = cross_fitted(examples, oof, folds, fit_bias=config.calibration == "platt")
    breast = rows["breast"]
    threshold = metrics.threshold_for_sensitivity(breast["labels"], breast["probabilities"], config.target_sensitivity)
    figures = report(rows, threshold, config.ece_bins)
    image_all = figures["image"]["all"]
    op = {
        "calibration": (a, b),
        "threshold": threshold,
        "exam_model": exam_model.to_dict(),
        "metrics": {
            "auc": image_all.get("auc"),
            "sensitivity": figures["breast"]["all"].get("sensitivity"),
            "specificity": figures["breast"]["all"].get("specificity"),
        },
    }
    return op, {
        "levels": figures,
        "auc": image_all.get("auc"),
        "auc_ci_low": image_all.get("auc_ci_low"),
        "auc_ci_high": image_all.get("auc_ci_high"),
        "sensitivity": op["metrics"]["sensitivity"],
        "specificity": op["metrics"]["specificity"],
        "ece": image_all.get("ece"),
        "n": image_all.get("n"),
        "n_abnormal": image_all.get("n_abnormal"),
    }


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
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DIR[=SOURCE]",
        help="a labelled folder (DIR/images, DIR/images.csv, DIR/findings.csv if present), named SOURCE "
        "(default: the folder's name); repeat it to train one model on several sources",
    )
    parser.add_argument("--images", help="folder of <image_id>.png|.dcm (one source, instead of --data)")
    parser.add_argument("--labels", help="images.csv: image_id, patient_id, laterality, label")
    parser.add_argument("--findings", help="findings.csv: image_id, x, y, radius (patch supervision)")
    parser.add_argument("--config", default="{}", help="ModelConfig fields as JSON, e.g. '{\"pool_top_k\": 8}'")
    parser.add_argument("--out", required=True, help="checkpoint path to write")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default from ModelConfig)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cv", type=int, default=0, help="k > 1: k-fold patient CV, then train on all data")
    parser.add_argument("--val-fraction", type=float, help="share of patients for validation (without --cv)")
    parser.add_argument("--cache-dir", help="cache backbone features here between runs")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.config).items()}
    config = dataclasses.replace(ModelConfig(), **overrides)
    if args.epochs:
        config.epochs = args.epochs
    if args.val_fraction:
        config.val_fraction = args.val_fraction
    if not args.data and not (args.images and args.labels):
        parser.error("give --data DIR (repeatable) or --images and --labels")
    examples = load_folder(args.images, args.labels, args.findings) if args.images else []
    for spec in args.data:
        folder, _, source = spec.partition("=")
        root = Path(folder)
        findings = root / "findings.csv"
        examples += load_folder(
            root / "images", root / "images.csv", findings if findings.exists() else None, source or root.name
        )
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
