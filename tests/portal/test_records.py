"""Decisions and audit are append-only; a deleted study leaves its trail and no files behind."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from screening.errors import PortalError
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.intake.services.renditions import full_resolution_png
from screening.intake.services.studies import delete_study
from screening.models import AppendOnlyError, AuditEvent, Finding, Image, ModelVersion, Prediction, Review, Study
from screening.reading.services.reviews import FindingInput, review_submit
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def study(radiologist, settings):
    """Two images (originals, renditions, full-resolution PNGs), a heatmap and a reviewed decision."""
    settings.PORTAL_RENDITION_MAX_SIDE = 128  # so the 256-row left image gets a full-resolution PNG too
    left = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(study_uid="1.2.3.4"))), filename="l.dcm").image
    right = ingest_file(
        file=io.BytesIO(to_bytes(mg_dataset(study_uid="1.2.3.4", laterality="R", seed=1))), filename="r.dcm"
    ).image
    assert left.study_id == right.study_id
    for image in (left, right):  # what the render worker does after ingest
        renditions.render_image(image.pk)
    left.refresh_from_db()
    full_resolution_png(left)
    version = ModelVersion.objects.create(name="v-test", checkpoint="test.pt", threshold=0.5)
    heatmap = default_storage.save("heatmaps/ab/abc.png", ContentFile(b"heatmap"))
    Prediction.objects.create(image=left, model_version=version, status="done", probability=0.7, heatmap=heatmap)
    review_submit(
        study=left.study,
        radiologist=radiologist,
        decision="abnormal",
        birads=4,
        findings=[FindingInput(left.pk, "mass", 10, 10, 20, 20)],
    )
    return Study.objects.get(pk=left.study_id)


def test_reviews_findings_and_audit_events_refuse_to_change(study):
    review = Review.objects.get(study=study)
    finding = Finding.objects.get(review=review)
    event = AuditEvent.objects.filter(study=study).first()
    for record in (review, finding, event):
        with pytest.raises(AppendOnlyError):
            record.save()
        with pytest.raises(AppendOnlyError):
            record.delete()
        with pytest.raises(AppendOnlyError):
            type(record).objects.filter(pk=record.pk).update(pk=record.pk)
        with pytest.raises(AppendOnlyError):
            type(record).objects.filter(pk=record.pk).delete()
    review.refresh_from_db()
    assert (review.decision, review.birads) == ("abnormal", 4)


def test_the_database_refuses_to_rewrite_an_audit_event_or_a_review(study):
    """Whatever code asks (a shell, a bug, raw SQL), the database keeps the record as it was."""
    event = AuditEvent.objects.filter(study=study).first()
    statements = [
        ("UPDATE screening_auditevent SET action = 'forged' WHERE id = %s", event.pk),
        ("UPDATE screening_review SET birads = 1 WHERE study_id = %s", study.pk),
    ]
    if connection.vendor == "postgresql":  # SQLite's flush deletes rows, so only PostgreSQL refuses DELETE
        statements.append(("DELETE FROM screening_auditevent WHERE id = %s", event.pk))
    for sql, pk in statements:
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [pk])
    assert AuditEvent.objects.get(pk=event.pk).action == event.action
    assert Review.objects.get(study=study).birads == 4


def test_deleting_a_study_removes_its_rows_and_files_and_audits_why(
    study, admin_user, media_root, django_capture_on_commit_callbacks
):
    files = stored_files(media_root)
    assert len([f for f in files if f.startswith(("originals/", "renditions/", "full/", "heatmaps/"))]) == 7
    predictions = Prediction.objects.filter(image__study=study).count()  # the baseline may have queued some too
    with django_capture_on_commit_callbacks(execute=True):
        delete_study(study=study, user=admin_user, reason="uploaded to the wrong portal", ip_address="10.1.2.3")
    assert stored_files(media_root) == []
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not Image.objects.exists() and not Prediction.objects.exists()
    assert not Review.objects.exists() and not Finding.objects.exists()
    event = AuditEvent.objects.get(action="study_delete")
    assert (event.study_id, event.username, event.ip_address) == (study.pk, "boss", "10.1.2.3")
    assert event.detail == {
        "reason": "uploaded to the wrong portal",
        "status": "reported",
        "images": 2,
        "reviews": 1,
        "predictions": predictions,
    }
    trail = AuditEvent.objects.filter(study_id=study.pk)
    assert {"ingest", "review_submit", "study_delete"} <= set(trail.values_list("action", flat=True))


def test_the_deletion_event_names_no_patient(study, admin_user):
    patient = study.patient
    delete_study(study=study, user=admin_user, reason="duplicate")
    text = str(AuditEvent.objects.get(action="study_delete").detail)
    for identifier in (patient.patient_id, patient.name, "Test", "1960", "ACC1", study.study_uid):
        assert identifier not in text


def test_a_rolled_back_deletion_keeps_the_rows_and_files(
    study, admin_user, media_root, django_capture_on_commit_callbacks
):
    files = stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            delete_study(study=study, user=admin_user, reason="duplicate")
            raise RuntimeError("something later in the same transaction failed")
    assert callbacks == []
    assert stored_files(media_root) == files
    assert Study.objects.filter(pk=study.pk).exists() and Review.objects.filter(study=study).exists()
    assert not AuditEvent.objects.filter(action="study_delete").exists()


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_study_is_not_deleted_without_a_reason(study, admin_user, media_root, reason):
    files = stored_files(media_root)
    with pytest.raises(PortalError) as refused:
        delete_study(study=study, user=admin_user, reason=reason)
    assert refused.value.field == "reason"
    assert Study.objects.filter(pk=study.pk).exists() and stored_files(media_root) == files
    assert not AuditEvent.objects.filter(action="study_delete").exists()


def test_the_audit_trail_of_a_deleted_study_stays_readable(client, study, admin_user):
    study_id = study.pk
    delete_study(study=study, user=admin_user, reason="consent withdrawn")
    client.force_login(admin_user)
    page = client.get(reverse("study-audit", args=[study_id]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "deleted" in text and "consent withdrawn" in text
    for action in ("ingest", "review_submit", "study_delete"):
        assert action in text
    assert client.get(reverse("study-audit", args=[study_id + 1000])).status_code == 404


@pytest.mark.parametrize(("decision", "birads"), [("normal", 5), ("normal", 0), ("abnormal", 1)])
def test_the_database_refuses_an_incoherent_decision(study, radiologist, decision, birads):
    """The service refuses it with a message; the constraint stops any other writer too."""
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(study=study, version=99, radiologist=radiologist, decision=decision, birads=birads)
    assert not Review.objects.filter(study=study, version=99).exists()
