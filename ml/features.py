"""Feature extraction and its disk cache: the frozen trunk runs once per image and view.

Each image's backbone features (and a few augmented views) are computed once and kept on disk, keyed by
the image's content and the settings that change them; patch targets (lesion cells) are derived from the
findings each time, so a cache stays valid when labels change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ml.config import ModelConfig
from ml.data import Example
from ml.inference import load_image
from ml.model import MammoNet, breast_cells
from ml.preprocess import Geometry, length_to_input, point_to_input, preprocess

Progress = Callable[[dict[str, Any]], None]  # called with {"stage", "done", "total"} as work advances


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
    hard_negative: bool = False


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


def cache_key(example: Example, config: ModelConfig, view: str) -> str:
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
        # Settings that change the features but were added later: part of the key only when
        # not the default, so caches built before them stay valid.
        + ([list(config.norm_mean), list(config.norm_std)] if config.norm_mean != ModelConfig.norm_mean else [])
        + (["adabn"] if config.adabn else [])
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def light_geometry(values: list[int]) -> Geometry:
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


def geometry_values(g: Geometry) -> list[int]:
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
            path = Path(cache_dir) / f"{cache_key(ex, config, view)}.pt" if cache_dir else None
            stored = torch.load(path, weights_only=True) if path is not None and path.exists() else {}
            if "geometry" in stored:
                feat, valid, geometry = stored["feat"], stored["valid"], light_geometry(stored["geometry"].tolist())
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
                    values = torch.tensor(geometry_values(geometry))
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
            Features(
                feats,
                valids,
                targets,
                int(ex.label),
                ex.patient_id,
                ex.source,
                first_geometry,
                ex.findings,
                ex.hard_negative,
            )
        )
        if progress:
            progress({"stage": "features", "done": n + 1, "total": len(examples)})
    return out
