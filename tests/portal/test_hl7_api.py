"""The results sent to a RIS in the REST study detail (`hl7_exports`): what a reader who may see the reads
gets after a real send to a local MLLP listener, and what nobody else may learn, not even that one exists:
a reader the reading policy blinds (a second reader, every reader of a case reopened by a late image) and
any role that may not see reads (an API client, whatever it is granted)."""

from __future__ import annotations

import io
import socket

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from screening.intake.serializers import StudySerializer
from screening.intake.services.ingest import ingest_file
from screening.models import DicomExport, Hl7Destination, Hl7Export, Study
from tests.conftest import _token_client
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.portal.mllp_listener import Ris
from tests.portal.test_hl7_results import a_study, decide, destination

pytestmark = pytest.mark.django_db

FIELDS = {
    "id",
    "review",
    "review_version",
    "destination",
    "control_id",
    "result_status",
    "status",
    "attempts",
    "ack_code",
    "error",
    "created",
    "updated",
}


@pytest.fixture
def ris():
    listener = Ris()
    yield listener
    listener.stop()


@pytest.fixture
def refusing_ris():
    listener = Ris("AR")
    yield listener
    listener.stop()


@pytest.fixture
def eager():
    with tasks_in_process("screening.tasks.send_hl7_result") as runs:
        yield runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def detail(client, study: Study) -> dict:
    response = client.get(f"/api/v1/studies/{study.pk}/")
    assert response.status_code == 200
    return response.json()


def a_result(study: Study, review, name: str, **fields) -> Hl7Export:
    """An export row as the queue writes it, made directly (a result the RIS acknowledged)."""
    dest = Hl7Destination.objects.create(name=name, host="127.0.0.1", port=2575)
    return Hl7Export.objects.create(
        study=study,
        review=review,
        destination=dest,
        destination_label=str(dest),
        control_id=f"ctl-{name}"[:20],
        result_status="F",
        **{"status": "sent", "attempts": 1, "ack_code": "AA", **fields},
    )


def test_a_reader_sees_each_result_sent_to_the_ris_with_its_status_and_version(
    ris, refusing_ris, eager, settings, radiologist, rad_api, django_capture_on_commit_callbacks
):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 1  # the refusing RIS's first AR is its last
    destination(ris)
    destination(refusing_ris, name="Refusing RIS")
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        first = decide(study, radiologist)
    with django_capture_on_commit_callbacks(execute=True):
        correction = decide(study, radiologist, breasts={"R": ("normal", 1), "L": ("normal", 2)}, reported=[])
    assert len(ris.messages()) == 2 and len(refusing_ris.messages()) == 2

    rows = detail(rad_api, study)["hl7_exports"]
    assert all(set(row) == FIELDS for row in rows)  # no patient data: the study detail already names her
    by_key = {(row["review"], row["destination"].split(" (")[0]): row for row in rows}
    assert set(by_key) == {(r.pk, d) for r in (first, correction) for d in ("RIS", "Refusing RIS")}
    assert [row["review"] for row in rows[:2]] == [correction.pk] * 2  # newest first
    sent = by_key[(first.pk, "RIS")]
    export = Hl7Export.objects.get(review=first, destination__name="RIS")
    assert sent["destination"] == f"RIS (127.0.0.1:{ris.port})" and sent["control_id"] == export.control_id
    assert (sent["status"], sent["ack_code"], sent["attempts"], sent["error"]) == ("sent", "AA", 1, "")
    assert (sent["result_status"], sent["review_version"]) == ("F", first.version)
    assert sent["updated"] >= sent["created"]
    corrected = by_key[(correction.pk, "RIS")]
    assert (corrected["result_status"], corrected["review_version"], corrected["status"]) == (
        "C",
        correction.version,
        "sent",
    )
    assert correction.version > first.version
    refused = by_key[(first.pk, "Refusing RIS")]
    assert (refused["status"], refused["ack_code"], refused["attempts"]) == ("failed", "AR", 1)
    assert refused["error"].startswith("gave up after 1 attempts") and "AR" in refused["error"]


def test_an_api_client_gets_no_results_whatever_it_is_granted_and_the_list_is_unchanged(
    ris, eager, radiologist, api, api_client_user, rad_api, django_capture_on_commit_callbacks
):
    """Reads are radiologists' and admins' (as `reviews` and `exports`): a client that may see every study and
    identity, and may view HL7 exports in the admin's terms, still gets no key that says a result went out."""
    destination(ris)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    assert Hl7Export.objects.get().status == "sent"
    api_client_user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_all_studies", "view_patient", "view_hl7export"])
    )
    body = detail(api, study)
    assert body["id"] == study.pk and {"hl7_exports", "reviews", "exports"}.isdisjoint(body)
    assert Hl7Export.objects.get().control_id not in str(body)

    for client in (api, rad_api):  # the list is the study without its details, for every role
        [row] = [r for r in client.get("/api/v1/studies/").json()["results"] if r["id"] == study.pk]
        assert set(row) == set(StudySerializer.Meta.fields)


def test_a_blinded_second_reader_gets_none_and_cannot_learn_one_exists(
    double_reading, radiologist, second_radiologist, rad_api
):
    """Double reading: the second reader must not learn the first read. A result and a decision SR of the first
    read (made directly: the queue sends only final decisions) stay off the second reader's detail."""
    study = a_study()
    first = decide(study, radiologist)
    assert not first.is_final
    export = a_result(study, first, "RIS")
    DicomExport.objects.create(
        study=study, review=first, kind="decision", destination="PACS@127.0.0.1:104", sop_instance_uid="1.2.3"
    )
    second = _token_client(second_radiologist)
    with CaptureQueriesContext(connection) as queries:
        body = detail(second, study)
    assert body["hl7_exports"] == [] and body["exports"] == [] and body["reviews"] == []
    assert export.control_id not in str(body) and "PACS@" not in str(body)
    assert not any("hl7export" in q["sql"] for q in queries.captured_queries)  # not even fetched

    # The first reader has read the case: the same rows are there for them, which shows the check can fail.
    mine = detail(rad_api, study)
    assert [row["control_id"] for row in mine["hl7_exports"]] == [export.control_id]
    assert [row["kind"] for row in mine["exports"]] == ["decision"]


def test_a_case_reopened_by_a_late_image_hides_the_earlier_results_until_it_is_final_again(
    ris, eager, settings, radiologist, second_radiologist, rad_api, client, django_capture_on_commit_callbacks
):
    """A real send, then an image of the same exam arrives: the case is read again from the start, every reader
    is blind to the first round's decision, and so to the result and the SR it sent (the case page shows none)."""
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 1
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]  # nothing listens: it fails
    destination(ris)
    study = a_study()
    with django_capture_on_commit_callbacks(execute=True):
        round_one = decide(study, radiologist)
    assert DicomExport.objects.filter(review=round_one, kind="decision").exists()
    late = mg_dataset(laterality="R", view="MLO", study_uid=study.study_uid, seed=5)
    ingest_file(file=io.BytesIO(to_bytes(late)), filename="late.dcm")
    study.refresh_from_db()
    assert study.status == "new" and study.reads_from is not None

    second = _token_client(second_radiologist)
    for client in (second, rad_api):  # the author of round one is no reader of round two yet
        body = detail(client, study)
        assert body["hl7_exports"] == [] and [e for e in body["exports"] if e["kind"] == "decision"] == []
    client.force_login(second_radiologist)
    page = client.get(f"/studies/{study.pk}/")
    assert page.status_code == 200 and "Sent to the RIS" not in page.content.decode()  # the case page agrees

    with django_capture_on_commit_callbacks(execute=True):
        round_two = decide(study, second_radiologist)
    assert round_two.is_final
    rows = detail(second, study)["hl7_exports"]
    assert [(row["review"], row["result_status"]) for row in rows] == [(round_two.pk, "C"), (round_one.pk, "F")]
    assert "Sent to the RIS" in client.get(f"/studies/{study.pk}/").content.decode()


def test_the_detail_makes_as_many_queries_with_many_results_as_with_one(
    radiologist, rad_api, django_capture_on_commit_callbacks
):
    study = a_study()
    with django_capture_on_commit_callbacks(execute=False):  # rows only: nothing is sent
        review = decide(study, radiologist)
    a_result(study, review, "RIS 0")
    with CaptureQueriesContext(connection) as one:
        assert len(detail(rad_api, study)["hl7_exports"]) == 1
    for n in range(1, 6):
        a_result(study, review, f"RIS {n}", status="failed", ack_code="AE", error="AE: unknown order")
    with CaptureQueriesContext(connection) as six:
        assert len(detail(rad_api, study)["hl7_exports"]) == 6
    assert len(six) == len(one), [q["sql"][:120] for q in six.captured_queries]
