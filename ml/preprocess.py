"""From a presentation image (ml.io) to the model's input, and heatmaps back again.

Pure NumPy (+ Pillow for resampling), deterministic, no torch. Steps:

1. find the breast: threshold a coarse copy of the image, keep the connected
   component holding the most breast-like area (film labels, markers and scanner
   text are separate blobs and are dropped), fill its holes;
2. orientation: flip the whole image so the chest wall is on the LEFT. The image
   decides (the chest-wall half of an MLO breast holds more breast area); the
   laterality ('L' chest wall left, 'R' right, the display convention) decides
   only when the image is ambiguous. mini-MIAS, for one, does not follow the
   convention for every image;
3. crop to the breast's bounding box, zero everything outside the breast,
   resize (aspect kept) to fit the input, pad right/bottom with zeros.

`Geometry` records the flip, crop box and scale so `heatmap_to_original` and
`point_to_input` map between the original image and the model input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml.config import ModelConfig


@dataclass(frozen=True)
class Geometry:
    original_shape: tuple[int, int]  # rows, cols of the image given to preprocess()
    flipped: bool  # True: the original was mirrored left-right first
    box: tuple[int, int, int, int]  # top, bottom, left, right (exclusive) in the flipped frame
    resized_shape: tuple[int, int]  # rows, cols the crop was resized to (top-left of the input)
    input_shape: tuple[int, int]  # model input rows, cols
    mask: np.ndarray  # coarse breast mask (bool) in the flipped frame
    mask_factor: int  # original pixels per coarse mask cell


@dataclass(frozen=True)
class Preprocessed:
    image: np.ndarray  # float32 (input_height, input_width) in [0, 1], zero outside the breast
    geometry: Geometry


def _coarse(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means over factor x factor cells (the ragged edge is dropped)."""
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    if rows == 0 or cols == 0:
        raise ValueError(f"image of shape {image.shape} is too small")
    trimmed = image[: rows * factor, : cols * factor]
    return trimmed.reshape(rows, factor, cols, factor).mean(axis=(1, 3), dtype=np.float32)


def _grow(region: np.ndarray, within: np.ndarray | None) -> np.ndarray:
    out = region.copy()
    out[1:] |= region[:-1]
    out[:-1] |= region[1:]
    out[:, 1:] |= region[:, :-1]
    out[:, :-1] |= region[:, 1:]
    if within is not None:
        out &= within
    return out


def _fill_runs(region: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Every run (along rows) of `within` that touches `region`, whole."""
    starts = within.copy()
    starts[:, 1:] &= ~within[:, :-1]  # a run starts where `within` begins, and at each row's first column
    run = np.cumsum(starts, axis=None).reshape(within.shape) * within  # run number; 0 outside `within`
    touched = np.zeros(int(run.max()) + 1, dtype=bool)
    touched[run[region & within]] = True
    touched[0] = False
    return touched[run]


def _flood(seed: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Geodesic dilation of `seed` inside `within` until stable (4-connectivity): the 4-connected parts of
    `within` that hold a seed. Whole runs are filled along rows, then along columns, until nothing changes:
    a few passes for a breast, where growing one cell at a time took as many steps as the breast is wide."""
    region = seed & within
    while True:
        grown = _fill_runs(region, within)
        grown = _fill_runs(grown.T, within.T).T
        if np.array_equal(grown, region):
            return region
        region = grown


def _box_blur(mask: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(mask.astype(np.float32), ((radius + 1, radius), (radius + 1, radius)))
    c = padded.cumsum(0).cumsum(1)
    k = 2 * radius + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def breast_mask(image: np.ndarray, config: ModelConfig) -> tuple[np.ndarray, int]:
    """Coarse boolean mask of the breast and the pixels-per-cell factor."""
    factor = max(1, math.ceil(max(image.shape) / config.mask_max_side))
    small = _coarse(image, factor)
    background = float(np.percentile(small, 2))
    tissue = float(np.percentile(small, 99))
    threshold = background + config.mask_threshold_fraction * max(tissue - background, 1e-3)
    fg = small > threshold
    if not fg.any():
        return np.ones_like(fg), factor
    # Seed in the most solid part of the foreground: inside the breast, not in a
    # thin label or a film edge.
    # The window is wider than any label, so a solid white label cannot win.
    score = _box_blur(fg, max(2, min(fg.shape) // 8)) * fg
    seed = np.zeros_like(fg)
    seed[np.unravel_index(int(np.argmax(score)), score.shape)] = True
    # Grow through an eroded foreground so thin bridges (a label touching the
    # skin line, a film edge) do not join, then take the eroded rim back.
    core = fg
    for _ in range(2):
        core = ~_grow(~core, None)
    region = _flood(seed & core, core) if (seed & core).any() else _flood(seed, fg)
    for _ in range(2):
        region = _grow(region, fg)
    # Fill holes: background reachable from the border stays background.
    border = np.zeros_like(fg)
    border[0, :] = border[-1, :] = True
    border[:, 0] = border[:, -1] = True
    outside = _flood(border & ~region, ~region)
    region = ~outside
    for _ in range(config.mask_dilate_cells):
        region = _grow(region, None)
    return region, factor


def chest_wall_on_left(mask: np.ndarray, laterality: str, margin: float) -> bool:
    """True when the chest wall is on the image's left."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size >= 2:
        left, right = cols[0], cols[-1] + 1
        width = right - left
        area = mask[:, left:right].sum(axis=0).astype(np.float64)
        third = max(1, width // 3)
        a_left, a_right = area[:third].sum(), area[-third:].sum()
        total = a_left + a_right
        if total > 0 and abs(a_left - a_right) / total >= margin:
            return bool(a_left > a_right)
    lat = (laterality or "").strip().upper()[:1]
    return lat != "R"


def _resize(array: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear resize of a float32 image (antialiased when shrinking)."""
    if array.shape == (rows, cols):
        return array.astype(np.float32, copy=True)
    img = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), mode="F")
    return np.asarray(img.resize((cols, rows), Image.Resampling.BILINEAR), dtype=np.float32)


def preprocess(image: np.ndarray, laterality: str, config: ModelConfig | None = None) -> Preprocessed:
    """Model input for one presentation image (float in [0, 1], dense tissue bright)."""
    config = config or ModelConfig()
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    image = np.asarray(image, dtype=np.float32)
    mask, factor = breast_mask(image, config)
    flipped = not chest_wall_on_left(mask, laterality, config.orientation_margin)
    if flipped:
        image = image[:, ::-1]
        mask, factor = breast_mask(image, config)

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom = int(rows[0]) * factor, min(image.shape[0], (int(rows[-1]) + 1) * factor)
    left, right = int(cols[0]) * factor, min(image.shape[1], (int(cols[-1]) + 1) * factor)
    full_mask = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
    full_mask = np.pad(
        full_mask,
        ((0, max(0, image.shape[0] - full_mask.shape[0])), (0, max(0, image.shape[1] - full_mask.shape[1]))),
        mode="edge",
    )[: image.shape[0], : image.shape[1]]
    crop = image[top:bottom, left:right] * full_mask[top:bottom, left:right]

    height, width = config.input_height, config.input_width
    scale = min(height / crop.shape[0], width / crop.shape[1])
    new_rows = min(height, max(1, round(crop.shape[0] * scale)))
    new_cols = min(width, max(1, round(crop.shape[1] * scale)))
    out = np.zeros((height, width), dtype=np.float32)
    out[:new_rows, :new_cols] = np.clip(_resize(crop, new_rows, new_cols), 0.0, 1.0)
    geometry = Geometry(
        original_shape=(int(image.shape[0]), int(image.shape[1])),
        flipped=flipped,
        box=(top, bottom, left, right),
        resized_shape=(new_rows, new_cols),
        input_shape=(height, width),
        mask=mask,
        mask_factor=factor,
    )
    return Preprocessed(image=out, geometry=geometry)


def heatmap_to_original(heatmap: np.ndarray, geometry: Geometry, max_side: int | None = None) -> np.ndarray:
    """Map a heatmap over the model input (any resolution) onto the original image.

    Returns float32 of `geometry.original_shape` (or that shape scaled down so its
    longest side is at most `max_side`: a display-sized heatmap is made directly,
    never through a full-resolution one), zero outside the breast.
    """
    heat = np.asarray(heatmap, dtype=np.float32)
    in_rows, in_cols = geometry.input_shape
    if heat.shape != (in_rows, in_cols):
        heat = _resize(heat, in_rows, in_cols)
    rows_o, cols_o = geometry.original_shape
    scale = 1.0 if not max_side else min(1.0, max_side / max(rows_o, cols_o))
    out_rows, out_cols = max(1, round(rows_o * scale)), max(1, round(cols_o * scale))
    rows, cols = geometry.resized_shape
    top, bottom, left, right = geometry.box
    y0, x0 = min(round(top * scale), out_rows - 1), min(round(left * scale), out_cols - 1)
    y1, x1 = max(y0 + 1, min(round(bottom * scale), out_rows)), max(x0 + 1, min(round(right * scale), out_cols))
    out = np.zeros((out_rows, out_cols), dtype=np.float32)
    out[y0:y1, x0:x1] = _resize(heat[:rows, :cols], y1 - y0, x1 - x0)
    # The coarse breast mask: each cell covers mask_factor original pixels.
    cell = geometry.mask_factor * scale
    row_idx = (np.arange(out_rows) / cell).astype(np.int64)
    col_idx = (np.arange(out_cols) / cell).astype(np.int64)
    # The indices only grow: each mask cell repeated as many times as output pixels fall in it (what
    # indexing with them gives, without a gather over every output pixel); beyond the mask, zero.
    mask = geometry.mask
    row_counts = np.bincount(row_idx[row_idx < mask.shape[0]], minlength=mask.shape[0])
    col_counts = np.bincount(col_idx[col_idx < mask.shape[1]], minlength=mask.shape[1])
    keep = np.repeat(np.repeat(mask, row_counts, axis=0), col_counts, axis=1)
    out[keep.shape[0] :, :] = 0.0
    out[:, keep.shape[1] :] = 0.0
    out[: keep.shape[0], : keep.shape[1]] *= keep
    if geometry.flipped:
        out = out[:, ::-1]
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0))


def point_to_input(x: float, y: float, geometry: Geometry) -> tuple[float, float]:
    """Original pixel coordinates (column x, row y; top-left origin) -> input coordinates."""
    if geometry.flipped:
        x = geometry.original_shape[1] - 1 - x
    top, bottom, left, right = geometry.box
    sx = geometry.resized_shape[1] / (right - left)
    sy = geometry.resized_shape[0] / (bottom - top)
    return (x - left + 0.5) * sx - 0.5, (y - top + 0.5) * sy - 0.5


def length_to_input(length: float, geometry: Geometry) -> float:
    """A distance in original pixels (e.g. a finding radius) in input pixels."""
    top, bottom, _, _ = geometry.box
    return length * geometry.resized_shape[0] / (bottom - top)
