"""Seeding labels from a labelled folder (mini-MIAS format): the base set as if radiologists had read it.

Used by `manage.py seed_labels` and bench/learning_curve.py. Each image goes
through the ordinary ingest; each woman's study gets one review by a system user,
so seeded labels are labels like any other (latest review wins, pools, snapshots).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from django.contrib.auth import get_user_model

from ml.data import find_image, parse_label
from screening.intake.services.ingest import ingest_file
from screening.models import Finding, Image, Study
from screening.reading.services.reviews import FindingInput, review_submit

SEED_USERNAME = "seed-labels"
FINDING_TYPES = {
    "CALC": Finding.Type.CALCIFICATION,
    "CIRC": Finding.Type.MASS,
    "SPIC": Finding.Type.MASS,
    "MISC": Finding.Type.MASS,
    "ARCH": Finding.Type.DISTORTION,
    "ASYM": Finding.Type.ASYMMETRY,
}


def seed_labels(
    images_dir: Path, labels_csv: Path, findings_csv: Path | None = None, *, patient_ids: Iterable[str] | None = None
) -> dict[str, int]:
    """Import a labelled folder and record its labels as reviews by a system user, one per woman's study.

    images.csv (image_id, patient_id, laterality, view, label) and findings.csv
    (image_id, abnormality, x, y, radius; origin top-left) as in ../shared/data/mias.
    A finding becomes a box around its circle; an abnormal image without a position
    gets a whole-image box (abnormal breast, no localisation hint). Studies that
    already have a review are left alone, so running it twice changes nothing.
    """
    with open(labels_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh)]
    wanted = set(patient_ids) if patient_ids is not None else None
    rows = [r for r in rows if wanted is None or r["patient_id"].strip() in wanted]
    circles: dict[str, list[dict[str, str]]] = {}
    if findings_csv is not None and Path(findings_csv).exists():
        with open(findings_csv, newline="") as fh:
            for r in csv.DictReader(fh):
                circles.setdefault(r["image_id"].strip(), []).append(r)
    seeder, _ = get_user_model().objects.get_or_create(username=SEED_USERNAME, defaults={"is_active": False})
    by_study: dict[int, list[tuple[Image, dict[str, str]]]] = {}
    counts = {"images": 0, "reviews": 0, "already_reviewed": 0}
    for row in rows:
        path = find_image(Path(images_dir), row["image_id"].strip())
        with open(path, "rb") as fh:
            image = ingest_file(
                file=fh,
                filename=path.name,
                patient_id=row["patient_id"].strip(),
                laterality=(row.get("laterality") or "").strip(),
                view=(row.get("view") or "").strip(),
                via="seed_labels",
            ).image
        by_study.setdefault(image.study_id, []).append((image, row))
        counts["images"] += 1
    for study_id, members in by_study.items():
        study = Study.objects.get(pk=study_id)
        if study.reviews.exists():
            counts["already_reviewed"] += 1
            continue
        findings = []
        abnormal = False
        for image, row in members:
            if not parse_label(row["label"]):
                continue
            abnormal = True
            placed = False
            for c in circles.get(row["image_id"].strip(), []):
                kind = FINDING_TYPES.get((c.get("abnormality") or "").strip().upper(), Finding.Type.OTHER)
                if (c.get("x") or "").strip() and (c.get("y") or "").strip():
                    x, y, r = float(c["x"]), float(c["y"]), float(c.get("radius") or 0) or 10.0
                    left, top = max(0.0, x - r), max(0.0, y - r)
                    right, bottom = min(float(image.columns), x + r), min(float(image.rows), y + r)
                    findings.append(FindingInput(image.pk, kind, left, top, right - left, bottom - top))
                    placed = True
            if not placed:
                kind = Finding.Type.CALCIFICATION if circles.get(row["image_id"].strip()) else Finding.Type.OTHER
                findings.append(FindingInput(image.pk, kind, 0.0, 0.0, float(image.columns), float(image.rows)))
        review_submit(
            study=study,
            radiologist=seeder,
            decision="abnormal" if abnormal else "normal",
            birads=4 if abnormal else 1,
            findings=findings,
            note=f"seeded from {Path(labels_csv).name}",
        )
        counts["reviews"] += 1
    return counts
