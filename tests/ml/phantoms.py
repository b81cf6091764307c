"""Synthetic mammogram phantoms drawn with NumPy (no MIAS data in tests)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

LABEL_BOX = (slice(20, 60), slice(-70, -20))  # a bright film label near the top-right corner
MARKER = (slice(-40, -30), slice(-40, -30))  # a small marker near the bottom-right corner


def phantom(
    rows: int = 320,
    cols: int = 256,
    chest_left: bool = True,
    lesion: tuple[int, int, int] | None = None,
    seed: int = 0,
    with_label: bool = True,
) -> np.ndarray:
    """A breast (half ellipse on the chest wall) with texture, optional bright lesion (x, y, r), label and marker."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cy, ry, rx = rows * 0.5, rows * 0.42, cols * 0.55
    breast = ((xx / rx) ** 2 + ((yy - cy) / ry) ** 2) <= 1.0
    image = np.full((rows, cols), 0.02, dtype=np.float32)
    texture = 0.35 + 0.1 * rng.standard_normal((rows, cols)).astype(np.float32)
    image[breast] = np.clip(texture[breast] + 0.2 * (1 - xx[breast] / rx), 0.15, 0.8)
    if lesion is not None:
        x, y, r = lesion
        image[((xx - x) ** 2 + (yy - y) ** 2) <= r * r] = 0.8
    if with_label:
        image[LABEL_BOX] = 1.0
        image[MARKER] = 1.0
    if not chest_left:
        image = np.ascontiguousarray(image[:, ::-1])
    return image


def write_folder(root: Path, n_patients: int = 8, seed: int = 0) -> tuple[Path, Path, Path]:
    """A mini-MIAS style folder: images/<id>.png, images.csv, findings.csv (one abnormal breast per odd patient)."""
    images = root / "images"
    images.mkdir(parents=True)
    rows, findings = [], []
    n = 0
    for p in range(n_patients):
        for lat in ("L", "R"):
            n += 1
            image_id = f"img{n:03d}"
            abnormal = p % 2 == 1 and lat == "L"
            lesion = (60, 130 + 10 * (p % 3), 22) if abnormal else None
            img = phantom(lesion=lesion, chest_left=lat == "L", seed=seed + n)
            if lesion is not None and lat == "R":
                lesion = (img.shape[1] - 1 - lesion[0], lesion[1], lesion[2])
            Image.fromarray((img * 255).round().astype(np.uint8)).save(images / f"{image_id}.png")
            rows.append([image_id, f"pat{p:02d}", lat, "MLO", "F", "abnormal" if abnormal else "normal"])
            if lesion is not None:
                findings.append([image_id, "CIRC", "B", *lesion])
    labels = root / "images.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "patient_id", "laterality", "view", "tissue", "label"])
        w.writerows(rows)
    findings_csv = root / "findings.csv"
    with open(findings_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "abnormality", "severity", "x", "y", "radius"])
        w.writerows(findings)
    return images, labels, findings_csv
