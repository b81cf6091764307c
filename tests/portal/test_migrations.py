"""A database migrated by the main of 2026-12-06 (its last migration 0022_merge_20261206_1740), before the code
moved into sub-domain packages, migrates forward to today's models with its data kept.

The reshape kept the one app label `screening`, so no table is renamed: this holds it (and every later
migration) to that. PostgreSQL only: it is what deployments run.
"""

from __future__ import annotations

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from screening.models import (
    AuditEvent,
    DicomDestination,
    DicomPeer,
    Finding,
    Image,
    ModelVersion,
    Outcome,
    Patient,
    Prediction,
    ReadingPolicy,
    Review,
    Site,
    Study,
)

OLD_LEAF = [("screening", "0022_merge_20261206_1740")]

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="deployments migrate PostgreSQL")


def _insert_with_the_old_models(apps, user_id: int) -> None:
    """One row of each kind of record, through the models as they were at the old leaf."""
    get = apps.get_model
    get("screening", "Site").objects.create(code="north", name="North unit")
    patient = get("screening", "Patient").objects.create(patient_id="MIGR-1", sex="F", birth_date=date(1960, 1, 2))
    study = get("screening", "Study").objects.create(patient=patient, study_uid="2.25.1001", site="north")
    image = get("screening", "Image").objects.create(
        study=study,
        sop_uid="2.25.1002",
        file_format="dicom",
        original="originals/migr.dcm",
        rows=256,
        columns=200,
        sha256="a" * 64,
        size_bytes=1234,
        laterality="L",
        view="CC",
    )
    version = get("screening", "ModelVersion").objects.create(name="migr-model", checkpoint="x.pt", threshold=0.3)
    get("screening", "Prediction").objects.create(image=image, model_version=version, status="done", probability=0.7)
    review = get("screening", "Review").objects.create(
        study=study, version=1, radiologist_id=user_id, decision="abnormal", birads=4
    )
    get("screening", "Finding").objects.create(review=review, image=image, laterality="L", type="mass", x=0.4, y=0.5)
    get("screening", "Outcome").objects.create(
        study=study, laterality="L", result="malignant", cancer_type="invasive", recorded_by_id=user_id
    )
    get("screening", "ReadingPolicy").objects.create(site="north", mode="double", created_by_id=user_id)
    get("screening", "AuditEvent").objects.create(action="study_assign", study=study, detail={"to": "reader"})
    get("screening", "DicomPeer").objects.create(ae_title="MODALITY1", host="10.0.0.4", site="north")
    get("screening", "DicomDestination").objects.create(ae_title="PACS", host="10.0.0.5", port=104)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_database_of_the_old_main_migrates_forward_with_its_data(django_user_model):
    user = django_user_model.objects.create_user("migr-reader")
    executor = MigrationExecutor(connection)
    executor.migrate(OLD_LEAF)
    old_apps = executor.loader.project_state(OLD_LEAF).apps
    _insert_with_the_old_models(old_apps, user.pk)

    executor = MigrationExecutor(connection)  # a fresh loader sees what is applied now
    executor.migrate(executor.loader.graph.leaf_nodes())
    after = MigrationExecutor(connection)
    assert after.migration_plan(after.loader.graph.leaf_nodes()) == []  # at the latest migration

    study = Study.objects.get(study_uid="2.25.1001")
    assert (study.patient.patient_id, study.site) == ("MIGR-1", "north")
    image = Image.objects.get(sop_uid="2.25.1002")
    assert (image.study_id, image.laterality, image.view, image.sha256) == (study.pk, "L", "CC", "a" * 64)
    prediction = Prediction.objects.get(image=image)
    assert (prediction.model_version.name, prediction.probability) == ("migr-model", 0.7)
    review = Review.objects.get(study=study)
    assert (review.radiologist_id, review.decision, review.birads) == (user.pk, "abnormal", 4)
    assert Finding.objects.get(review=review).type == "mass"
    assert Outcome.objects.get(study=study).result == "malignant"
    assert ReadingPolicy.objects.get(site="north").mode == "double"
    assert AuditEvent.objects.get(action="study_assign", study=study).detail == {"to": "reader"}
    assert DicomPeer.objects.get(ae_title="MODALITY1").site == "north"
    assert DicomDestination.objects.get(ae_title="PACS").port == 104
    assert Site.objects.get(code="north").name == "North unit"
    assert Patient.objects.filter(patient_id="MIGR-1").count() == 1
    assert ModelVersion.objects.filter(name="migr-model").exists()
