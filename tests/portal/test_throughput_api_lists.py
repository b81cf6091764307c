"""The image and prediction lists are keyset (cursor) paginated (issue 14): no COUNT, no OFFSET;
a request naming `page` still gets the former page-number answer."""

from __future__ import annotations

import io

import pytest

from screening.intake.services.ingest import ingest_file
from screening.models import ModelVersion, Prediction
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def images():
    made = [
        ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=i, patient_id=f"C{i}"))), filename=f"{i}.dcm").image
        for i in range(3)
    ]
    version = ModelVersion.objects.create(name="v-cursor", checkpoint="x.pt", threshold=0.5)
    for image in made:
        Prediction.objects.get_or_create(image=image, model_version=version)
    return made


@pytest.mark.parametrize(
    "path", ["/api/v1/images/?page_size=2", "/api/v1/predictions/?model_version=v-cursor&page_size=2"]
)
def test_a_list_is_walked_newest_first_by_cursor_without_a_count(rad_api, images, path):
    first = rad_api.get(path).json()
    assert set(first) == {"next", "previous", "results"}  # no count: counting 400k rows was the cost
    assert first["previous"] is None and "cursor=" in first["next"]
    second = rad_api.get(first["next"]).json()
    assert second["next"] is None and "cursor=" in second["previous"]
    ids = [row["id"] for row in first["results"] + second["results"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)


def test_a_request_naming_a_page_gets_the_former_page_number_answer(rad_api, images):
    body = rad_api.get("/api/v1/images/", {"page": 1}).json()
    assert body["count"] == 3 and len(body["results"]) == 3
    ordered = rad_api.get("/api/v1/images/", {"ordering": "id"}).json()
    assert [row["id"] for row in ordered["results"]] == sorted(image.pk for image in images)


def test_a_damaged_cursor_is_a_404_in_the_one_error_shape(rad_api, images):
    response = rad_api.get("/api/v1/images/", {"cursor": "not-a-cursor"})
    assert response.status_code == 404 and response.json()["error"]["code"]


@pytest.mark.parametrize(("ordering", "index"), [("date", "all_by_date"), ("score", "all_by_score")])
def test_every_study_unread_first_is_read_from_an_index_not_sorted(ordering, index, django_user_model):
    """The study list and the worklist's "all" view order by (unread first, then date or score): PostgreSQL
    reads that page from an expression index instead of sorting every study (200 ms at 100k studies)."""
    from django.db import connection

    from screening.models import Study
    from screening.reading.selectors import WorklistFilters, worklist_for
    from tests.conftest import _user

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    patient = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="P0"))), filename="0.dcm").image.study.patient
    Study.objects.bulk_create(
        Study(study_uid=f"2.25.{i}", patient=patient, status="reported" if i % 3 else "predicted", exam_score=i / 3000)
        for i in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE screening_study")
    user = _user(django_user_model, "planner", "radiologist")
    page = worklist_for(user, WorklistFilters(status="", ordering=ordering))[:50]
    plan = page.explain()
    assert f"Index Scan using {index}" in plan and "Sort" not in plan.split(index)[0], plan
    unread_first = [s.status != "reported" for s in page]
    assert unread_first == sorted(unread_first, reverse=True)


def test_the_arbitration_worklist_starts_from_the_second_reads_not_from_every_unread_study(django_user_model):
    """At 100k studies the arbitration list scanned every unread study (75k rows) for each page and for its
    count (96 ms at one client, 525 ms at eight). It is now found from the second reads: PostgreSQL reads the
    studies by primary key, whatever the number of studies and reads."""
    from django.db import connection

    from screening.models import Review, Study
    from screening.reading.selectors import arbitration_worklist
    from tests.conftest import _user

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    patient = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="P0"))), filename="0.dcm").image.study.patient
    studies = Study.objects.bulk_create(
        Study(
            study_uid=f"2.25.{i}",
            patient=patient,
            status="reported" if i % 4 == 0 else "predicted",
            study_date=f"2026-01-{1 + i % 28:02d}",
        )
        for i in range(20000)
    )
    first, second = (_user(django_user_model, name, "radiologist") for name in ("first", "second"))
    single = [
        Review(study=s, version=1, radiologist=first, slot="single", decision="normal", birads=1) for s in studies[::4]
    ]
    discordant = [studies[i] for i in range(1, 20000, 100)]
    pairs = [
        Review(
            study=study,
            version=version,
            radiologist=reader,
            slot=slot,
            decision=decision,
            birads=birads,
            is_final=False,
        )
        for study in discordant
        for version, reader, slot, decision, birads in (
            (1, first, "first", "normal", 1),
            (2, second, "second", "abnormal", 0),
        )
    ]
    Review.objects.bulk_create(single + pairs)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE screening_study; ANALYZE screening_review")
    page = arbitration_worklist()[:50]
    plan = page.explain()
    assert "Seq Scan on screening_study" not in plan, plan
    assert list(page) == sorted(discordant, key=lambda s: (s.study_date, s.pk))[:50]


def test_an_image_list_builds_the_prediction_fields_once_not_once_per_image(rad_api, images, monkeypatch):
    """Building a serializer's fields deep-copies them: doing it for each of a page's 50 images was half of
    the image list's time (36 ms -> 16 ms a request at 100k studies)."""
    from screening.ai.serializers import PredictionSerializer

    built = []
    original = PredictionSerializer.get_fields
    monkeypatch.setattr(PredictionSerializer, "get_fields", lambda self: built.append(1) or original(self))
    rows = rad_api.get("/api/v1/images/").json()["results"]
    assert len(rows) == 3 and all(row["prediction"]["model_version"] == "v-cursor" for row in rows)
    assert rows[0]["rendition_url"] == f"/api/v1/images/{rows[0]['id']}/rendition/"
    assert len(built) == 1


def test_the_former_page_numbers_reach_only_the_newest_rows_and_point_to_the_cursor(rad_api, images, monkeypatch):
    """`?page=2000` of 400,000 images was an OFFSET and a COUNT over all of them (411 ms, 2 s with eight
    clients): page numbers now reach the newest CAP rows, and deeper pages say to follow the cursor."""
    from screening.api.pagination import FormerPageNumbers

    monkeypatch.setattr(FormerPageNumbers, "CAP", 2)
    monkeypatch.setattr(FormerPageNumbers, "page_size", 1)
    first = rad_api.get("/api/v1/images/", {"page": 1}).json()
    assert (first["count"], first["count_capped"], len(first["results"])) == (2, True, 1)
    assert rad_api.get("/api/v1/images/", {"page": 3}).status_code == 200  # the CAP + 1st row still answers
    deep = rad_api.get("/api/v1/images/", {"page": 4})
    assert deep.status_code == 404 and "cursor" in str(deep.json())


def test_an_arbitration_backlog_too_long_to_name_in_one_query_is_still_listed(django_user_model, monkeypatch):
    """Past ARBITRATION_IDS_INLINE studies (SQLite takes at most 32,766 parameters) the list filters by subquery."""
    from screening.models import Review, Study
    from screening.reading import selectors
    from tests.conftest import _user

    patient = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="P0"))), filename="0.dcm").image.study.patient
    studies = Study.objects.bulk_create(
        Study(study_uid=f"2.25.{i}", patient=patient, status="predicted", study_date=f"2026-02-{1 + i:02d}")
        for i in range(3)
    )
    first, second = (_user(django_user_model, name, "radiologist") for name in ("first", "second"))
    Review.objects.bulk_create(
        Review(study=study, version=version, radiologist=reader, slot=slot, decision="normal", birads=1, is_final=False)
        for study in studies
        for version, reader, slot in ((1, first, "first"), (2, second, "second"))
    )
    inline = list(selectors.arbitration_worklist())
    monkeypatch.setattr(selectors, "ARBITRATION_IDS_INLINE", 2)
    assert list(selectors.arbitration_worklist()) == inline == studies
