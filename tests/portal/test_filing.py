"""Issue 21, the wrong woman: resends that differ are refused and audited on every upload face,
demographics that disagree with the stored woman hold the study, and an admin refiles as a new version."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.uid import generate_uid

from screening.intake.services import filing
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, DemographicsConflict, Image, Patient, Prediction, Refiling, Study
from screening.reading.views import viewer_data
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes
from tests.uploads import png_bytes, upload

pytestmark = pytest.mark.django_db

STOW_TYPE = 'multipart/related; type="application/dicom"; boundary=XYZ'


def _stow(client, *contents: bytes):
    part = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n"
    body = b"".join(part + c + b"\r\n" for c in contents) + b"--XYZ--\r\n"
    return client.generic("POST", "/dicomweb/studies", data=body, content_type=STOW_TYPE)


def _picture(seed: int) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 255, (64, 48), dtype=np.uint8))


def _conflicts():
    return AuditEvent.objects.filter(action="ingest_conflict")


# --- resends --------------------------------------------------------------------------------------------


def test_a_sop_instance_uid_resent_with_other_pixels_is_a_409_and_audited(api, media_root):
    ds = mg_dataset(seed=1)
    assert upload(api, to_bytes(ds)).status_code == 201
    ds.PixelData = mg_dataset(seed=2).PixelData
    response = upload(api, to_bytes(ds))
    assert response.status_code == 409, response.json()
    assert response.json()["error"]["code"] == "resend_conflict"
    assert "already stored with other content" in response.json()["error"]["message"]
    assert Image.objects.count() == 1 and len(stored_files(media_root)) == 1
    event = _conflicts().get()
    assert event.detail["reason"] == "same_uid_other_content" and event.object_id == str(Image.objects.get().pk)


def test_a_sop_instance_uid_resent_for_another_patient_is_a_409(api, media_root):
    ds = mg_dataset(patient_id="WOMAN-A")
    upload(api, to_bytes(ds))
    ds.PatientID = "WOMAN-B"
    response = upload(api, to_bytes(ds))
    assert response.status_code == 409
    assert not Patient.objects.filter(patient_id="WOMAN-B").exists()
    assert Image.objects.get().study.patient.patient_id == "WOMAN-A"
    assert _conflicts().count() == 1


def test_an_identical_resend_stays_an_idempotent_success_with_no_conflict(api):
    content = to_bytes(mg_dataset())
    first, second = upload(api, content), upload(api, content)
    assert (first.status_code, second.status_code) == (201, 200)
    picture = _picture(1)
    assert upload(api, picture, "a.png", patient_id="P-1", laterality="L", view="CC").status_code == 201
    assert upload(api, picture, "a.png", patient_id="P-1", laterality="L", view="CC").status_code == 200
    assert upload(api, picture, "a.png", patient_id="P-1").status_code == 200  # blank fields ask nothing
    assert not _conflicts().exists()


@pytest.mark.parametrize("changed", [{"patient_id": "P-2"}, {"laterality": "R"}, {"view": "MLO"}])
def test_the_same_picture_file_for_another_patient_side_or_view_is_a_409(api, media_root, changed):
    picture = _picture(2)
    fields = {"patient_id": "P-1", "laterality": "L", "view": "CC"}
    assert upload(api, picture, "a.png", **fields).status_code == 201
    response = upload(api, picture, "a.png", **{**fields, **changed})
    assert response.status_code == 409, response.json()
    assert "already stored for another patient, side or view" in response.json()["error"]["message"]
    image = Image.objects.get()
    assert (image.study.patient.patient_id, image.laterality, image.view) == ("P-1", "L", "CC")
    assert _conflicts().get().detail["reason"] == "same_file_other_filing"
    assert not Patient.objects.filter(patient_id="P-2").exists()


def test_stow_answers_a_differing_resend_409_with_duplicate_sop_instance(api, media_root):
    ds = mg_dataset(seed=1)
    assert _stow(api, to_bytes(ds)).status_code == 200
    ds.PixelData = mg_dataset(seed=3).PixelData
    response = _stow(api, to_bytes(ds))
    assert response.status_code == 409, response.content
    failed = response.json()["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0111]
    assert _conflicts().get().detail["via"] == "stow"
    assert len(stored_files(media_root)) == 1


# --- demographics --------------------------------------------------------------------------------------


def _study(patient_id: str, *, name: str, birth: str, date: str, seed: int) -> Study:
    ds = mg_dataset(patient_id=patient_id, seed=seed)
    ds.PatientName, ds.PatientBirthDate, ds.StudyDate = name, birth, date
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image.study


def test_a_study_with_another_name_and_birth_date_is_held_and_never_a_prior(db, admin_user):
    first = _study("SHARED-1", name="Smith^Anna", birth="19600102", date="20240101", seed=1)
    same = _study("SHARED-1", name="SMITH^ANNA", birth="19600102", date="20250101", seed=2)
    other = _study("SHARED-1", name="Jones^Beth", birth="19711111", date="20260101", seed=3)
    assert not DemographicsConflict.objects.filter(study=same).exists()  # case and spacing are no conflict
    conflict = DemographicsConflict.objects.get(study=other)
    assert (conflict.received_name, str(conflict.received_birth_date)) == ("Jones Beth", "1971-11-11")
    assert conflict.stored_name == "Smith Anna" and conflict.patient == first.patient
    assert AuditEvent.objects.filter(action="demographics_hold", study=other).exists()
    assert Patient.objects.get().name == "Smith Anna"  # the stored woman is not rewritten
    # Neither way round is a held study a prior: not of hers, and hers not of it.
    assert viewer_data(other)["priors"] == []
    later = _study("SHARED-1", name="Smith^Anna", birth="19600102", date="20270101", seed=4)
    assert [p["id"] for p in viewer_data(later)["priors"]] == [same.pk, first.pk]
    filing.reconcile_same_woman(conflict=conflict, user=admin_user, note="checked with the unit")
    assert [p["id"] for p in viewer_data(later)["priors"]][0] == other.pk
    assert AuditEvent.objects.filter(action="demographics_reconcile", study=other).exists()


def test_blank_demographics_and_picture_uploads_are_no_conflict(api):
    _study("SHARED-2", name="Smith^Anna", birth="19600102", date="20240101", seed=1)
    _study("SHARED-2", name="", birth="", date="20250101", seed=2)
    assert upload(api, _picture(5), "a.png", patient_id="SHARED-2").status_code == 201
    assert not DemographicsConflict.objects.exists()


def test_the_admin_queue_lists_held_studies_and_refiles_one_to_another_woman(client, admin_user, radiologist):
    _study("SHARED-3", name="Smith^Anna", birth="19600102", date="20240101", seed=1)
    held = _study("SHARED-3", name="Jones^Beth", birth="19711111", date="20260101", seed=2)
    client.force_login(radiologist)
    assert client.get("/filing/reconciliation/").status_code == 403
    client.force_login(admin_user)
    page = client.get("/filing/reconciliation/")
    assert page.status_code == 200 and f'data-study="{held.pk}"'.encode() in page.content
    conflict = DemographicsConflict.objects.get(study=held)
    response = client.post(
        f"/filing/reconciliation/{conflict.pk}/", {"action": "refile", "patient_id": "JONES-7", "reason": "RIS says"}
    )
    assert response.status_code == 302
    held.refresh_from_db()
    assert held.patient.patient_id == "JONES-7"
    conflict.refresh_from_db()
    assert conflict.resolution == "refiled" and conflict.resolved_by == admin_user
    assert f'data-study="{held.pk}"'.encode() not in client.get("/filing/reconciliation/").content
    assert Refiling.objects.filter(image__study=held, from_patient__patient_id="SHARED-3").count() == 1


# --- refiling -------------------------------------------------------------------------------------------


def _predicted_study(champion, patient_id="P-R", views=(("L", "CC"), ("R", "CC"))) -> Study:
    from screening.ai.services import predicting

    study_uid = generate_uid()
    for i, (side, view) in enumerate(views):
        ds = mg_dataset(laterality=side, view=view, study_uid=study_uid, patient_id=patient_id, seed=10 + i)
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm")
    while queued := Prediction.objects.filter(status="queued").first():
        predicting.run_prediction(queued.pk)
    return Study.objects.get(study_uid=study_uid)


def test_refiling_an_images_side_is_a_version_rescored_audited_and_readable(admin_user, champion):
    study = _predicted_study(champion)
    before = (study.score_left, study.score_right)
    assert None not in before
    image = study.images.get(laterality="L")
    refiling = filing.refile_image(image=image, user=admin_user, reason="marker said R", laterality="R")
    assert (refiling.version, refiling.from_laterality, refiling.to_laterality) == (1, "L", "R")
    image.refresh_from_db()
    assert image.laterality == "R"
    # The old prediction (made as a left breast) is gone and a new one queued; the exam waits for it.
    assert list(image.predictions.values_list("status", flat=True)) == ["queued"]
    study.refresh_from_db()
    assert study.exam_score is None
    from screening.ai.services import predicting

    predicting.run_prediction(image.predictions.get().pk)
    study.refresh_from_db()
    assert study.score_left is None and study.score_right is not None  # both images are right breasts now
    history = filing.filing_history(image)
    assert [(h["version"], h["laterality"]) for h in history] == [(0, "L"), (1, "R")]
    assert AuditEvent.objects.filter(action="image_refile", object_id=str(image.pk), detail__version=1).exists()
    with pytest.raises(Exception, match="append-only"):
        refiling.save()


def test_refiling_an_image_to_another_woman_moves_it_into_a_study_of_hers(admin_user, champion, client):
    study = _predicted_study(champion, patient_id="WRONG-1")
    image = study.images.first()
    client.force_login(admin_user)
    page = client.post(f"/filing/images/{image.pk}/", {"patient_id": "RIGHT-1", "reason": "two women, one ID"})
    assert page.status_code == 302
    image.refresh_from_db()
    assert image.study.patient.patient_id == "RIGHT-1" and image.study_id != study.pk
    assert (image.study.study_date, image.study.site) == (study.study_date, study.site)
    history = client.get(f"/filing/images/{image.pk}/").content.decode()
    assert "WRONG-1" in history and "RIGHT-1" in history and "two women, one ID" in history
    # The last image of a study cannot leave it alone: the study is refiled instead.
    last = study.images.get()
    refused = client.post(f"/filing/images/{last.pk}/", {"patient_id": "RIGHT-1", "reason": "x"})
    assert refused.status_code == 200 and b"refile the study" in refused.content
    assert not Refiling.objects.filter(image=last).exists()


def test_a_refiling_needs_a_reason_and_a_change_and_an_admin(admin_user, radiologist, champion, client):
    image = _predicted_study(champion).images.first()
    with pytest.raises(Exception, match="say why"):
        filing.refile_image(image=image, user=admin_user, reason=" ", view="MLO")
    with pytest.raises(Exception, match="nothing to correct"):
        filing.refile_image(image=image, user=admin_user, reason="x", laterality=image.laterality)
    client.force_login(radiologist)
    assert client.post(f"/filing/images/{image.pk}/", {"view": "MLO", "reason": "x"}).status_code == 403
    assert not Refiling.objects.exists()


def test_a_refiled_image_leaves_over_dicomweb_under_its_corrected_filing(admin_user, champion, rad_api):
    """The stored header still names the woman it was corrected from: WADO-RS writes the current filing in."""
    import pydicom

    from screening.exchange.web import series_uid

    study = _predicted_study(champion, patient_id="WRONG-2")
    image = study.images.get(laterality="L")
    filing.refile_image(image=image, user=admin_user, reason="wrong woman", patient_id="RIGHT-2", view="MLO")
    image.refresh_from_db()
    url = f"/dicomweb/studies/{image.study.study_uid}/series/{series_uid(image)}/instances/{image.sop_uid}"
    response = rad_api.get(url, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200
    ds = pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content)))
    assert (ds.PatientID, ds.StudyInstanceUID, ds.ViewPosition) == ("RIGHT-2", image.study.study_uid, "MLO")
    metadata = rad_api.get(url + "/metadata").json()[0]
    assert metadata["00100020"]["Value"] == ["RIGHT-2"] and metadata["00185101"]["Value"] == ["MLO"]


def test_a_held_study_gives_no_training_label_and_a_refiled_side_moves_its_label(admin_user, radiologist, champion):
    from screening.ai.labels import collect_labels
    from screening.reading.services.reviews import FindingInput, review_submit

    _study("SHARED-9", name="Smith^Anna", birth="19600102", date="20240101", seed=1)
    held = _study("SHARED-9", name="Jones^Beth", birth="19711111", date="20260101", seed=2)
    review_submit(study=held, radiologist=radiologist, decision="normal", birads=1)
    assert held.pk not in {Image.objects.get(pk=label.image_id).study_id for label in collect_labels()}
    filing.reconcile_same_woman(conflict=held.demographics_conflict, user=admin_user)
    assert held.pk in {Image.objects.get(pk=label.image_id).study_id for label in collect_labels()}

    study = _predicted_study(champion, patient_id="SIDES-1")
    left, right = study.images.get(laterality="L"), study.images.get(laterality="R")
    finding = FindingInput(image_id=left.pk, type="mass", x=10, y=10, width=5, height=5)
    review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4, findings=[finding])
    labels = {label.image_id: label.label for label in collect_labels()}
    assert (labels[left.pk], labels[right.pk]) == (1, 0)
    filing.refile_image(image=left, user=admin_user, reason="marker was wrong", laterality="R")
    filing.refile_image(image=right, user=admin_user, reason="marker was wrong", laterality="L")
    labels = {label.image_id: label.label for label in collect_labels()}
    assert (labels[left.pk], labels[right.pk]) == (1, 0)  # the marked image stays abnormal under its new side
