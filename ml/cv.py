"""Patient-level cross-validation on cached features, and the shipped procedure `train_with_cv`.

Out-of-fold logits give the calibration, operating point and every figure of the model card; the
final head trains on every example for the folds' median best epoch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml import metrics
from ml.adabn import adapt_batchnorm
from ml.calibrate import cv_operating_point, operating_point_record
from ml.checkpoint import make_checkpoint
from ml.config import ModelConfig
from ml.data import Example, patient_folds, summarize
from ml.features import Features, extract_features
from ml.fit import fit_projection, fold_head, head_for, head_logits, project, seed_all, train_head
from ml.model import MammoNet, build_model
from ml.operating import DIGITAL, fit_sources, source_kind
from ml.regions import box_share, peak_point, point_in_region, top_regions
from ml.report import pointing_game


def cross_validate(
    examples: Sequence[Example],
    features: Sequence[Features],
    config: ModelConfig,
    n_folds: int = 5,
    seed: int = 0,
    model: MammoNet | None = None,
    extra_views: Sequence[Sequence[Features]] = (),
    head_seed: int | None = None,
) -> dict[str, Any]:
    """Patient-level k-fold CV on cached features: out-of-fold logits and each fold's best epoch.

    Inside each training part a further patient split picks the epoch, so the
    held-out fold never influences its own model. `extra_views`: other pictures of the same examples (a
    flipped view, for test-time augmentation): each fold's head scores them too (`extra_oof`, one array each).
    `head_seed`: seeds the heads' initialisation and batches apart from the folds (a seed ensemble on the same folds).
    """
    model = model or build_model(config, seed=seed)
    projection = fit_projection(features, config.feature_projection, seed=seed)
    small_features = project(features, projection)
    small = head_for(config, small_features[0].views[0].shape[0])
    extra = [project(items, projection) for items in extra_views]
    extra_oof = [np.zeros(len(examples)) for _ in extra]
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
        head_base = seed if head_seed is None else head_seed
        torch.manual_seed(head_base + k)
        for m in small.head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        result = train_head(
            small,
            [small_features[i] for i in inner_train],
            [small_features[i] for i in inner_val],
            config,
            seed=head_base + k,
            desc=f"fold {k + 1}/{n_folds}",
        )
        epochs.append(result["best_epoch"])
        oof[held] = head_logits(small, [small_features[i] for i in held])
        for items, scores in zip(extra, extra_oof, strict=True):
            scores[held] = head_logits(small, [items[i] for i in held])
        for i in held:
            hits[i] = pointing_hit(small, small_features[i])
            with torch.inference_mode():
                oof_patches[i] = small.head(small_features[i].views[0].float().unsqueeze(0))[0, 0].numpy()
    return {
        "oof_logits": oof,
        "extra_oof": extra_oof,
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
    seed_all(seed)
    started = time.time()
    model = build_model(config, seed=seed)
    if config.adabn:
        adapt_batchnorm(model, examples, config, cache_dir)
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
    seed_all(seed)
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
        operating_point=operating_point_record(op, config, f"{n_folds}-fold patient CV (cross-fitted, breast level)"),
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
