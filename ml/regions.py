"""The top suspicious regions of an image: boxes a radiologist can check, from the patch heatmap.

The patch grid (one calibrated probability per feature cell, ml.model) is searched
greedily: take the most suspicious cell inside the breast, grow it best-first over
the 4-connected cells whose probability is at least half the peak's, up to
`MAX_CELLS` cells (and never more than a tenth of the breast), report that blob's box
mapped back to original pixel coordinates, and repeat outside it. The cap keeps a
region local: a box around most of the breast points at nothing. A region below
`min_probability` (the model's region threshold, ml.operating) is not reported.
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


MAX_CELLS = 12  # a 3 x 4 cell box: about 20 x 26 mm on a 1024-row mini-MIAS film
MAX_BREAST_SHARE = 0.10


def _blob(grid: np.ndarray, free: np.ndarray, seed: tuple[int, int], floor: float, max_cells: int) -> np.ndarray:
    """Best-first growth from `seed` over free cells at or above `floor`, while its bounding box stays within
    `max_cells` cells (so the box drawn, not only the blob, stays local)."""
    blob = np.zeros_like(free)
    blob[seed] = True
    top = bottom = seed[0]
    left = right = seed[1]
    frontier: dict[tuple[int, int], float] = {}
    rows, cols = grid.shape
    current = seed
    while True:
        r, c = current
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < rows and 0 <= cc < cols and free[rr, cc] and not blob[rr, cc] and grid[rr, cc] >= floor:
                frontier[(rr, cc)] = float(grid[rr, cc])
        fits = [
            cell
            for cell in frontier
            if (max(bottom, cell[0]) - min(top, cell[0]) + 1) * (max(right, cell[1]) - min(left, cell[1]) + 1)
            <= max_cells
        ]
        if not fits:
            return blob
        current = max(fits, key=frontier.__getitem__)
        del frontier[current]
        blob[current] = True
        top, bottom = min(top, current[0]), max(bottom, current[0])
        left, right = min(left, current[1]), max(right, current[1])


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
    patch_probs: np.ndarray,
    valid: np.ndarray | None,
    geometry: Geometry,
    k: int = 3,
    min_probability: float = 0.0,
    max_cells: int = MAX_CELLS,
) -> list[Region]:
    """Up to k regions at or above `min_probability`, most suspicious first; cells outside the breast
    (`valid` False) are never chosen; each covers at most `max_cells` cells and a tenth of the breast."""
    grid = np.asarray(patch_probs, dtype=np.float64)
    free = np.ones(grid.shape, bool) if valid is None else np.asarray(valid, bool).copy()
    if not free.any():
        free[:] = True
    cap = max(1, min(max_cells, int(MAX_BREAST_SHARE * free.sum())))
    in_rows, in_cols = geometry.input_shape
    cell_h, cell_w = in_rows / grid.shape[0], in_cols / grid.shape[1]
    out: list[Region] = []
    while len(out) < k and free.any():
        masked = np.where(free, grid, -np.inf)
        seed = np.unravel_index(int(np.argmax(masked)), grid.shape)
        peak = float(grid[seed])
        if peak < min_probability:
            break
        blob = _blob(grid, free, (int(seed[0]), int(seed[1])), 0.5 * peak, cap)
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


def box_share(region: Region | dict, breast_cells: int, geometry: Geometry, grid: tuple[int, int]) -> float:
    """A region's box area as a share of the breast's area (both in model-input cells)."""
    r = region if isinstance(region, dict) else region.to_dict()
    rows, cols = geometry.resized_shape
    b_top, b_bottom, b_left, b_right = geometry.box
    in_rows, in_cols = geometry.input_shape
    cell_h = (b_bottom - b_top) / rows * in_rows / grid[0]
    cell_w = (b_right - b_left) / cols * in_cols / grid[1]
    cell_area_original = cell_h * cell_w
    return float(r["width"] * r["height"] / max(cell_area_original * max(breast_cells, 1), 1e-9))
