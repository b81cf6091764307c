"""Research export end to end: a study with identifiers in every standard and private place comes out with none
of them (every element, the raw bytes, the labels and the manifest), dciodvfy-clean, with the same new UIDs in two
exports of one project; burned-in images are left out unless asked for; each export downloads once."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import zipfile

import pydicom
import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.urls import reverse

from tests.conftest import _user
from tests.dicom_factory import to_bytes
from tests.research_export.sources import (
    ACCESSION,
    BIRTH,
    INSTITUTION,
    NAME,
    OPERATOR,
    OTHER_ID,
    PATIENT_ID,
    REFERRER,
    identified_mammogram,
)

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="needs Debian's dicom3tools")


@pytest.fixture
def study(db):
    """Two views (L, R) of one woman through the real ingest, plus a burned-in secondary image."""
    from screening.intake.services.ingest import ingest_file

    first = identified_mammogram(laterality="L")
    images = [ingest_file(file=io.BytesIO(to_bytes(first)), filename="l.dcm").image]
    right = identified_mammogram(laterality="R", study_uid=first.StudyInstanceUID)
    images.append(ingest_file(file=io.BytesIO(to_bytes(right)), filename="r.dcm").image)
    burned = identified_mammogram(laterality="R", study_uid=first.StudyInstanceUID, burned_in="YES")
    images.append(ingest_file(file=io.BytesIO(to_bytes(burned)), filename="b.dcm").image)
    return {"study": images[0].study, "sources": [first, right, burned], "images": images}


def _identifiers(sources) -> set[str]:
    from screening.research_export.deidentify import source_identifiers

    found = {NAME, PATIENT_ID, ACCESSION, BIRTH, OTHER_ID, REFERRER, OPERATOR, INSTITUTION}
    found |= {"Smithereens", "Agatha", "Quackenbush", "Winifred", "Nether Wallop"}
    for ds in sources:
        found |= source_identifiers(ds)
        found |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
    return found


def _export(admin, project, **options):
    from screening.models import ResearchExport
    from screening.research_export import services

    export = services.request_export(
        project=project,
        user=admin,
        reason="training set for the next model (ethics ref 24/NW/0001)",
        filters={},
        options=options,
    )
    assert services.build_export(export.pk).startswith("research_exports/")
    export = ResearchExport.objects.get(pk=export.pk)
    assert export.status == "done" and export.progress == {"done": 3, "total": 3}
    return export


def _open(export):
    from django.core.files.storage import default_storage

    with default_storage.open(export.archive.name, "rb") as fh:
        return zipfile.ZipFile(io.BytesIO(fh.read()))


def _scan(archive, identifiers) -> list[str]:
    """Every element at every depth (file meta and private elements included), every file's bytes, the CSV."""
    problems = []
    for name in archive.namelist():
        content = archive.read(name)
        texts = [content.decode("latin-1")]
        if name.endswith(".dcm"):
            ds = pydicom.dcmread(io.BytesIO(content))
            texts += [str(e.value) for e in ds.iterall() if e.keyword != "PixelData"]
            texts += [str(e.value) for e in ds.file_meta]
            problems += [f"{name}: private {e.tag}" for e in ds.iterall() if e.tag.is_private]
        for identifier in identifiers:
            if any(identifier in t for t in texts):
                problems.append(f"{name}: {identifier}")
    return problems


@needs_dciodvfy
def test_an_identified_study_comes_out_with_none_of_its_identifiers_and_dciodvfy_clean(study, admin_user, tmp_path):
    from screening.research_export import services

    project = services.create_project(name="next model", user=admin_user)
    export = _export(admin_user, project)
    archive = _open(export)
    dicoms = [n for n in archive.namelist() if n.endswith(".dcm")]
    assert len(dicoms) == 2  # the burned-in third image is left out
    assert not _scan(archive, _identifiers(study["sources"]))
    for name in dicoms:
        path = tmp_path / "x.dcm"
        path.write_bytes(archive.read(name))
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES" and ds.BurnedInAnnotation == "NO"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert codes == {"113100", "113107", "113108"}  # basic profile, modified dates, patient characteristics
        assert ds.PatientAge == "067Y" and ds.PatientSex == "F"
        assert ds.StudyDate != "20260301" and ds.StudyDate  # shifted, kept
        assert ds.get("StationName", "") == "" and ds.get("DeviceSerialNumber", "") == ""  # no device option
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["counts"] == {"studies": 1, "images": 2, "left_out": 1, "left_out_burned_in": 1}
    assert "BurnedInAnnotation is YES" in manifest["left_out"][0]["reason"]
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert [r["laterality"] for r in rows] == ["L", "R"]
    new = pydicom.dcmread(io.BytesIO(archive.read(dicoms[0])))
    assert {r["subject_id"] for r in rows} == {str(new.PatientID)}
    assert {r["study_uid"] for r in rows} == {str(new.StudyInstanceUID)}
    assert rows[0]["images"] == "1" and rows[0]["age"] == "67"


def test_two_exports_of_one_project_give_the_same_new_uids_and_another_project_does_not(study, admin_user):
    from screening.research_export import services

    project = services.create_project(name="cohort A", user=admin_user)
    other = services.create_project(name="cohort B", user=admin_user)

    def uids(export):
        archive = _open(export)
        found = set()
        for name in archive.namelist():
            if name.endswith(".dcm"):
                ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
                found.add((ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.StudyDate))
        return found

    first, second = uids(_export(admin_user, project)), uids(_export(admin_user, project))
    assert first == second and len(first) == 2
    third = uids(_export(admin_user, other))
    assert not {u[3] for u in first} & {u[3] for u in third}
    assert {u[0] for u in first}.isdisjoint({u[0] for u in third})


def test_device_identity_and_burned_in_images_only_when_asked(study, admin_user):
    from screening.research_export import services

    project = services.create_project(name="device audit", user=admin_user)
    export = _export(admin_user, project, retain_device_identity=True, include_burned_in=True, retain_dates=False)
    archive = _open(export)
    dicoms = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in archive.namelist() if n.endswith(".dcm")]
    assert len(dicoms) == 3
    assert {d.StationName for d in dicoms} == {"NWBU-MG1"} and {d.DeviceSerialNumber for d in dicoms} == {"SN-55219"}
    assert {d.StudyDate for d in dicoms} == {""} and {d.LongitudinalTemporalInformationModified for d in dicoms} == {
        "REMOVED"
    }
    manifest = json.loads(archive.read("manifest.json"))
    assert [f["burned_in_flag"] for f in manifest["files"]].count("BurnedInAnnotation is YES") == 1
    assert not _scan(archive, _identifiers(study["sources"]) - {"NWBU-MG1"})


def test_an_export_downloads_once_by_the_admin_who_made_it(study, admin_user, client, django_user_model):
    from screening.models import AuditEvent
    from screening.research_export import services

    project = services.create_project(name="once", user=admin_user)
    export = _export(admin_user, project)
    other_admin = _user(django_user_model, "boss2", "admin", is_staff=True)
    client.force_login(other_admin)
    assert client.get(reverse("research-export-download", args=[export.pk])).status_code == 404
    client.force_login(admin_user)
    response = client.get(reverse("research-export-download", args=[export.pk]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    # Closing the response runs its closers (the archive's deletion) and request_finished, which would close the
    # test's database connection: keep it open, as the test client does while it handles a request.
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
    assert zipfile.ZipFile(io.BytesIO(body)).namelist()
    from django.core.files.storage import default_storage

    assert not default_storage.exists(export.archive.name)  # deleted once handed over
    again = client.get(reverse("research-export-download", args=[export.pk]), follow=True)
    assert "downloaded already" in again.content.decode()
    actions = list(AuditEvent.objects.filter(object_type="researchexport").values_list("action", flat=True))
    assert sorted(actions) == ["research_export_done", "research_export_download", "research_export_request"]
    request_event = AuditEvent.objects.get(action="research_export_request")
    assert request_event.username == "boss" and "ethics ref" in request_event.detail["reason"]


def test_bad_requests_are_refused_and_leave_nothing(study, admin_user):
    from screening.errors import PortalError
    from screening.models import ResearchExport
    from screening.research_export import services

    project = services.create_project(name="bad", user=admin_user)
    cases = [
        ({"reason": "short"}, "reason"),
        ({"filters": {"score_min": "high"}}, "score_min"),
        ({"filters": {"date_from": "01/02/2026"}}, "date_from"),
        ({"filters": {"outcome": "cured"}}, "outcome"),
        ({"filters": {"site": "nowhere"}}, "filters"),
        ({"options": {"retain_dates": "maybe"}}, "retain_dates"),
    ]
    for change, field in cases:
        arguments = {"reason": "a long enough reason", "filters": {}, "options": {}, **change}
        with pytest.raises(PortalError) as raised:
            services.request_export(project=project, user=admin_user, **arguments)
        assert raised.value.field == field
    assert not ResearchExport.objects.exists()
    with pytest.raises(PortalError):
        services.create_project(name="bad", user=admin_user)


def test_the_api_queues_an_export_and_refuses_others(study, admin_user, api, rad_api):
    from tests.conftest import _token_client

    admin_api = _token_client(admin_user)
    project = admin_api.post("/api/v1/research-projects/", {"name": "api project"}, format="json")
    assert project.status_code == 201
    body = {
        "project": project.json()["id"],
        "reason": "audit of the AI on site north",
        "filters": {"reading": "unread"},
    }
    queued = admin_api.post("/api/v1/research-exports/", body, format="json")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    bad = admin_api.post("/api/v1/research-exports/", {**body, "filters": {"score_max": 7}}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == {
        "score_max": ["score_max must be a number between 0 and 1"]
    }
    for client in (api, rad_api):
        assert client.post("/api/v1/research-exports/", body, format="json").status_code == 403
        assert client.get(f"/api/v1/research-exports/{queued.json()['id']}/download/").status_code == 403


def test_the_api_hands_the_archive_over_once(study, admin_user):
    from screening.research_export import services
    from tests.conftest import _token_client

    admin_api = _token_client(admin_user)
    export = _export(admin_user, services.create_project(name="api once", user=admin_user))
    status = admin_api.get(f"/api/v1/research-exports/{export.pk}/").json()
    assert status["status"] == "done" and status["summary"]["images"] == 2
    first = admin_api.get(f"/api/v1/research-exports/{export.pk}/download/")
    assert first.status_code == 200 and first["Content-Disposition"].startswith("attachment")
    assert zipfile.ZipFile(io.BytesIO(b"".join(first.streaming_content))).namelist()
    second = admin_api.get(f"/api/v1/research-exports/{export.pk}/download/")
    assert second.status_code == 409 and "downloaded already" in second.json()["error"]["message"]


def test_a_head_request_does_not_use_the_one_download(study, admin_user, client):
    from screening.models import ResearchExport
    from screening.research_export import services
    from tests.conftest import _token_client

    export = _export(admin_user, services.create_project(name="head", user=admin_user))
    client.force_login(admin_user)
    assert client.head(reverse("research-export-download", args=[export.pk])).status_code == 200
    assert _token_client(admin_user).head(f"/api/v1/research-exports/{export.pk}/download/").status_code == 200
    assert ResearchExport.objects.get(pk=export.pk).status == "done"
    assert client.get(reverse("research-export-download", args=[export.pk])).status_code == 200
