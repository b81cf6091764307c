"""Studies with a given AI score for the reading workflow tests (fixtures: tests/portal/conftest.py)."""

from __future__ import annotations

import io

from screening.intake.services.ingest import ingest_file
from screening.models import Study
from tests.dicom_factory import mg_dataset, to_bytes


def make_study(patient: str, score: float | None = None, flag: bool | None = None, seed: int = 0, **kwargs) -> Study:
    image = ingest_file(
        file=io.BytesIO(to_bytes(mg_dataset(patient_id=patient, seed=seed, **kwargs))), filename=f"{patient}.dcm"
    ).image
    Study.objects.filter(pk=image.study_id).update(exam_score=score, exam_flag=flag, status="predicted")
    return Study.objects.get(pk=image.study_id)
