"""Training examples and their sources.

`Example` is all `ml.train.fit` needs; the folder+CSV reader below is one source
(mini-MIAS layout), the portal's retraining job builds Examples from its database.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".dcm", ".dicom", ".tif", ".tiff", ".jpg", ".jpeg", ".pgm")


@dataclass(frozen=True)
class Example:
    image_path: str
    patient_id: str
    laterality: str  # 'L' or 'R'
    label: int  # 1 abnormal, 0 normal
    # (x, y, radius) in original pixels, x column / y row from the top-left; findings
    # without a position (diffuse calcifications) are simply not listed.
    findings: tuple[tuple[float, float, float], ...] = field(default_factory=tuple)
    image_id: str = ""
    tissue: str = ""
    view: str = ""  # CC, MLO, ... ('' when unknown)
    source: str = ""  # data set name (e.g. 'mias', 'rsna'): metrics are reported per source
    exam_id: str = ""  # the exam (study) the image belongs to; '' = one exam per patient
    # A normal image whose woman was recalled at screening (BI-RADS 0) or biopsied and found benign: a
    # hard negative (RSNA's birads/biopsy columns), weighted by ModelConfig.hard_negative_weight.
    hard_negative: bool = False

    @property
    def exam(self) -> str:
        return self.exam_id or self.patient_id


def parse_label(value: str | int) -> int:
    text = str(value).strip().lower()
    if text in ("abnormal", "1", "true", "yes", "positive", "malignant", "benign"):
        return 1
    if text in ("normal", "0", "false", "no", "negative"):
        return 0
    raise ValueError(f"label {value!r} is neither normal nor abnormal")


def find_image(images_dir: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = images_dir / f"{image_id}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no image file for {image_id} in {images_dir}")


def load_folder(
    images_dir: str | Path, labels_csv: str | Path, findings_csv: str | Path | None = None, source: str = ""
) -> list[Example]:
    """Examples from a folder of <image_id>.png|.dcm and an images.csv (+ optional findings.csv).

    images.csv: image_id, label, and optionally patient_id, laterality, view, tissue
    (or density), source (a column overrides the `source` argument), biopsy and birads (hard negatives)."""
    images_dir = Path(images_dir)
    findings: dict[str, list[tuple[float, float, float]]] = {}
    if findings_csv is not None and Path(findings_csv).exists():
        with open(findings_csv, newline="") as fh:
            for row in csv.DictReader(fh):
                x, y, r = ((row.get(k) or "").strip() for k in ("x", "y", "radius"))
                if x and y:
                    findings.setdefault(row["image_id"].strip(), []).append((float(x), float(y), float(r or 0)))
    examples = []
    with open(labels_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            image_id = row["image_id"].strip()
            examples.append(
                Example(
                    image_path=str(find_image(images_dir, image_id)),
                    patient_id=(row.get("patient_id") or image_id).strip(),
                    laterality=(row.get("laterality") or "").strip().upper(),
                    label=parse_label(row["label"]),
                    findings=tuple(findings.get(image_id, ())),
                    image_id=image_id,
                    tissue=(row.get("tissue") or row.get("density") or "").strip(),
                    view=(row.get("view") or "").strip().upper(),
                    source=(row.get("source") or source).strip(),
                    hard_negative=parse_label(row["label"]) == 0
                    and ((row.get("biopsy") or "").strip() == "1" or (row.get("birads") or "").strip() == "0"),
                )
            )
    return examples


def patient_folds(examples: Sequence[Example], n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of each fold; a patient's images stay together, folds balanced for abnormal patients."""
    patients: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        patients.setdefault(ex.patient_id, []).append(i)
    rng = np.random.default_rng(seed)
    names = sorted(patients)
    abnormal = [p for p in names if any(examples[i].label for i in patients[p])]
    normal = [p for p in names if p not in set(abnormal)]
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    offset = 0
    for group in (abnormal, normal):
        order = rng.permutation(len(group))
        for j, k in enumerate(order):
            folds[(j + offset) % n_folds].extend(patients[group[k]])
        offset += len(group)
    return [np.array(sorted(f), dtype=np.int64) for f in folds]


def patient_split(
    examples: Sequence[Example], val_fraction: float, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Train/validation split by patient (stratified on having an abnormal image)."""
    n_folds = max(2, round(1.0 / max(val_fraction, 1e-6)))
    val_idx = set(patient_folds(examples, n_folds, seed)[0].tolist())
    train = [ex for i, ex in enumerate(examples) if i not in val_idx]
    val = [ex for i, ex in enumerate(examples) if i in val_idx]
    return train, val


def contralateral(examples: Sequence[Example]) -> list[int | None]:
    """Index of each example's other breast (same patient, other laterality), or None."""
    by_patient: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_patient.setdefault(ex.patient_id, []).append(i)
    other = {"L": "R", "R": "L"}
    out: list[int | None] = []
    for i, ex in enumerate(examples):
        want = other.get(ex.laterality)
        match = [j for j in by_patient[ex.patient_id] if j != i and examples[j].laterality == want]
        out.append(match[0] if want and match else None)
    return out


def summarize(examples: Sequence[Example]) -> dict[str, int]:
    return {
        "n_images": len(examples),
        "n_patients": len({ex.patient_id for ex in examples}),
        "n_abnormal": sum(ex.label for ex in examples),
        "n_with_findings": sum(1 for ex in examples if ex.findings),
    }
