"""The top suspicious regions of an image: boxes a radiologist can check, from the patch heatmap.

The patch grid (one calibrated probability per feature cell, ml.model) is searched
greedily: take the most suspicious cell inside the breast, grow it over the
4-connected cells whose probability is at least half the peak's, report that
blob's box mapped back to original pixel coordinates, and repeat outside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ml.preprocess import Geometry


@dataclass(frozen=True)
class Region:
    x: float  # left column, original pixels
    y: float  # top row, original pixels
    width: float
    height: float
    probability: float  # the peak cell's calibrated probability
    peak_x: float = 0.0  # centre of the peak cell, original pixels (the pointing-game point)
    peak_y: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4 if k == "probability" else 1) for k, v in asdict(self).items()}


def _blob(grid: np.ndarray, free: np.ndarray, seed: tuple[int, int], floor: float) -> np.ndarray:
    blob = np.zeros_like(free)
    blob[seed] = True
    stack = [seed]
    rows, cols = grid.shape
    while stack:
        r, c = stack.pop()
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < rows and 0 <= cc < cols and free[rr, cc] and not blob[rr, cc] and grid[rr, cc] >= floor:
                blob[rr, cc] = True
                stack.append((rr, cc))
    return blob


def input_box_to_original(
    top: float, bottom: float, left: float, right: float, geometry: Geometry
) -> tuple[float, float, float, float]:
    """A box in model-input pixels -> (x, y, width, height) in original pixels (flip undone)."""
    rows, cols = geometry.resized_shape
    b_top, b_bottom, b_left, b_right = geometry.box
    sy, sx = (b_bottom - b_top) / rows, (b_right - b_left) / cols
    y0, y1 = b_top + min(top, rows) * sy, b_top + min(bottom, rows) * sy
    x0, x1 = b_left + min(left, cols) * sx, b_left + min(right, cols) * sx
    if geometry.flipped:
        width = geometry.original_shape[1]
        x0, x1 = width - x1, width - x0
    return x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)


def top_regions(
    patch_probs: np.ndarray, valid: np.ndarray | None, geometry: Geometry, k: int = 3, min_probability: float = 0.0
) -> list[Region]:
    """Up to k regions, most suspicious first; cells outside the breast (`valid` False) are never chosen."""
    grid = np.asarray(patch_probs, dtype=np.float64)
    free = np.ones(grid.shape, bool) if valid is None else np.asarray(valid, bool).copy()
    if not free.any():
        free[:] = True
    in_rows, in_cols = geometry.input_shape
    cell_h, cell_w = in_rows / grid.shape[0], in_cols / grid.shape[1]
    out: list[Region] = []
    while len(out) < k and free.any():
        masked = np.where(free, grid, -np.inf)
        seed = np.unravel_index(int(np.argmax(masked)), grid.shape)
        peak = float(grid[seed])
        if peak < min_probability:
            break
        blob = _blob(grid, free, (int(seed[0]), int(seed[1])), 0.5 * peak)
        rr, cc = np.nonzero(blob)
        box = input_box_to_original(
            rr.min() * cell_h, (rr.max() + 1) * cell_h, cc.min() * cell_w, (cc.max() + 1) * cell_w, geometry
        )
        px, py = _cell_centre(int(seed[0]), int(seed[1]), grid.shape, geometry)
        out.append(Region(*box, probability=peak, peak_x=px, peak_y=py))
        # Leave a ring around the blob too, so the next region is a different place.
        grown = blob.copy()
        grown[1:] |= blob[:-1]
        grown[:-1] |= blob[1:]
        grown[:, 1:] |= blob[:, :-1]
        grown[:, :-1] |= blob[:, 1:]
        free &= ~grown
    return out


def _cell_centre(r: int, c: int, shape: tuple[int, ...], geometry: Geometry) -> tuple[float, float]:
    in_rows, in_cols = geometry.input_shape
    cy, cx = (r + 0.5) * in_rows / shape[0], (c + 0.5) * in_cols / shape[1]
    x, y, _, _ = input_box_to_original(cy, cy, cx, cx, geometry)
    return x, y


def peak_point(patch_probs: np.ndarray, valid: np.ndarray | None, geometry: Geometry) -> tuple[float, float]:
    """(x, y) in original pixels of the centre of the most suspicious cell inside the breast."""
    grid = np.asarray(patch_probs, dtype=np.float64)
    ok = np.ones(grid.shape, bool) if valid is None or not np.asarray(valid).any() else np.asarray(valid, bool)
    r, c = np.unravel_index(int(np.argmax(np.where(ok, grid, -np.inf))), grid.shape)
    return _cell_centre(int(r), int(c), grid.shape, geometry)


def point_in_region(x: float, y: float, region: Region | dict) -> bool:
    r = region if isinstance(region, dict) else region.to_dict()
    return r["x"] <= x <= r["x"] + r["width"] and r["y"] <= y <= r["y"] + r["height"]
