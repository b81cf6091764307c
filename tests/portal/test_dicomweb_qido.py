"""QIDO-RS per PS3.18: the attributes each level answers (RetrieveURL included), includefield, PN and
LO wildcard and fuzzy matching, PatientName as stored, a Warning header for keys the portal cannot
match, limit and offset."""

from __future__ import annotations

import io
from urllib.parse import parse_qsl

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from screening.exchange.web import series_uid
from screening.intake.selectors import pseudonym
from screening.intake.services import filing
from screening.intake.services.ingest import ingest_file
from screening.models import Image
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db
STUDY = "1.2.826.0.1.3680043.99.23.1"


def value(dataset: dict, tag: str):
    return dataset.get(tag, {}).get("Value", [None])[0]


def name(dataset: dict, tag: str = "00100010"):
    found = value(dataset, tag)
    return found and found["Alphabetic"]


@pytest.fixture
def study(radiologist):
    images = []
    for seed, side in enumerate("LR"):
        ds = mg_dataset(study_uid=STUDY, laterality=side, patient_id="PAT-0023", seed=seed)
        ds.PatientName = "Doe^Jane^^Dr"
        ds.StudyDescription = "Screening mammography"
        ds.StudyTime = "101500"
        ds.StudyID = "S23"
        ds.ReferringPhysicianName = "Who^Doctor"
        ds.SeriesDescription = f"{side} CC"
        ds.SeriesNumber = 3 + seed
        ds.InstanceNumber = 7
        images.append(ingest_file(file=io.BytesIO(to_bytes(ds)), user=radiologist).image)
    return images


def test_a_study_answers_what_a_viewers_study_list_shows(rad_api, study):
    (found,) = rad_api.get("/dicomweb/studies").json()
    assert value(found, "00081030") == "Screening mammography"  # StudyDescription (OHIF: "No Description")
    assert value(found, "00080030") == "101500" and value(found, "00200010") == "S23"
    assert name(found) == "Doe^Jane^^Dr"  # PN as stored, with its separators
    assert name(found, "00080090") == "Who^Doctor"
    assert value(found, "00100040") == "F" and value(found, "00100030") == "19600102"
    assert value(found, "00081190") == f"http://testserver/dicomweb/studies/{STUDY}"
    assert value(found, "00080056") == "ONLINE"
    assert value(found, "00201206") == 2 and value(found, "00201208") == 2


@pytest.mark.parametrize(
    ("query", "hits"),
    [
        ("PatientName=Doe^Jane", 1),  # components left out match any
        ("PatientName=Doe^Jane^^Dr", 1),
        ("PatientName=Doe^Jan", 0),
        ("PatientName=doe^jane^^Dr", 1),
        ("PatientName=Doe*", 1),
        ("PatientName=*jan*", 1),
        ("PatientName=D?e^Jane*", 1),
        ("PatientName=Jane", 0),
        ("PatientName=Jane&fuzzymatching=true", 1),
        ("PatientName=Smith^Jane", 0),
        ("PatientID=PAT-0023", 1),
        ("PatientID=PAT-00*", 1),
        ("PatientID=PAT-002?", 1),
        ("PatientID=pat-00*", 0),  # LO matching is case-sensitive
        ("PatientID=pat-00*&fuzzymatching=true", 1),
        ("PatientID=PAT", 0),
        ("AccessionNumber=AC*", 1),
        ("00100020=PAT-0023", 1),  # by tag
        ("PatientSex=F", 1),
        ("PatientSex=M", 0),
    ],
)
def test_pn_and_lo_keys_match_with_wildcards_and_fuzzy_matching(rad_api, study, query, hits):
    response = rad_api.get("/dicomweb/studies", dict(parse_qsl(query)))  # encoded: "?" as %3F
    assert response.status_code == 200 and len(response.json()) == hits
    assert "Warning" not in response


def test_a_key_the_portal_cannot_match_is_named_in_a_warning(rad_api, study):
    response = rad_api.get("/dicomweb/studies?StudyDescription=Nothing*&BodyPartExamined=CHEST&PatientID=PAT-0023")
    assert response.status_code == 200 and len(response.json()) == 1
    assert response["Warning"].startswith('299 portal "')
    assert "BodyPartExamined" in response["Warning"] and "StudyDescription" in response["Warning"]
    assert "PatientID" not in response["Warning"]


def test_a_series_answers_its_description_and_retrieve_url_and_includefield_adds_the_studys(rad_api, study):
    image = study[0]
    rows = rad_api.get(f"/dicomweb/studies/{STUDY}/series").json()
    by_uid = {value(row, "0020000E"): row for row in rows}
    row = by_uid[series_uid(image)]
    assert value(row, "0008103E") == "L CC" and value(row, "00200011") == 3
    assert value(row, "00081190") == f"http://testserver/dicomweb/studies/{STUDY}/series/{series_uid(image)}"
    assert "00081030" not in row
    row = rad_api.get(f"/dicomweb/studies/{STUDY}/series?includefield=StudyDescription").json()[0]
    assert value(row, "00081030") == "Screening mammography" and "00100010" not in row
    row = rad_api.get(f"/dicomweb/studies/{STUDY}/series?includefield=all").json()[0]
    assert name(row) == "Doe^Jane^^Dr"
    assert len(rad_api.get(f"/dicomweb/studies/{STUDY}/series?SeriesNumber=4").json()) == 1


def test_an_instance_answers_what_a_viewer_needs_to_load_it(rad_api, study):
    image = study[0]
    rows = rad_api.get(f"/dicomweb/studies/{STUDY}/series/{series_uid(image)}/instances").json()
    (row,) = rows
    assert value(row, "00080018") == image.sop_uid
    assert value(row, "00280100") == 16 and value(row, "00280008") == 1  # BitsAllocated, NumberOfFrames
    assert value(row, "00200013") == 7
    assert value(row, "00081190").endswith(f"/series/{series_uid(image)}/instances/{image.sop_uid}")
    row = rad_api.get(f"/dicomweb/studies/{STUDY}/instances?includefield=0008103E&SOPInstanceUID={image.sop_uid}")
    assert [value(r, "0008103E") for r in row.json()] == ["L CC"]


def test_a_pseudonymised_viewer_gets_neither_name_nor_birth_date(api, api_client_user):
    ds = mg_dataset(patient_id="OWN-1")
    ds.PatientName = "Roe^Richard"
    ingest_file(file=io.BytesIO(to_bytes(ds)), user=api_client_user)
    (found,) = api.get("/dicomweb/studies?includefield=all").json()
    assert value(found, "00100020") == pseudonym("OWN-1", api_client_user)
    assert "Value" not in found["00100010"] and "Value" not in found["00100030"]
    assert api.get("/dicomweb/studies?PatientName=Roe*").status_code == 403


def test_limit_and_offset_page_through_studies(rad_api, radiologist):
    for seed in range(3):
        ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=seed))), user=radiologist)
    everything = [value(s, "0020000D") for s in rad_api.get("/dicomweb/studies").json()]
    pages = [rad_api.get(f"/dicomweb/studies?limit=2&offset={offset}").json() for offset in (0, 2)]
    assert [value(s, "0020000D") for page in pages for s in page] == everything and len(everything) == 3


def test_runs_of_wildcards_collapse_and_an_overlong_value_is_400(rad_api, study):
    assert len(rad_api.get("/dicomweb/studies", {"PatientName": "D" + "*" * 500 + "e^*"}).json()) == 1
    refused = rad_api.get("/dicomweb/studies", {"PatientID": "P" * 2000})
    assert refused.status_code == 400 and "at most" in refused.json()["error"]["message"]


def _studies(client, query: str = "") -> dict[str, dict]:
    response = client.get(f"/dicomweb/studies?includefield=all{query}")
    assert response.status_code == 200
    return {value(found, "0020000D"): found for found in response.json()}


def test_a_study_search_asks_the_database_the_same_few_times_whatever_the_page_holds(
    rad_api, radiologist, django_assert_max_num_queries
):
    """A study's answer comes from a summary of its images (screening/exchange/web/summary.py), cached under a
    fingerprint the study query computes: a page of seven studies of two images costs what one study of one
    image does. Cold, the page's images in one query (8 in all: the token, roles, sites and reading policies,
    the studies, their images, their SRs, the read audit); warm, not even that one (7)."""
    ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=0))), user=radiologist)
    cache.clear()
    with CaptureQueriesContext(connection) as one:
        assert len(_studies(rad_api)) == 1
    assert len(one) <= 8
    for number in range(1, 7):
        for side in "LR":
            ds = mg_dataset(study_uid=f"{STUDY}.{number}", laterality=side, patient_id=f"P-{number}", seed=number)
            ingest_file(file=io.BytesIO(to_bytes(ds)), user=radiologist)
    cache.clear()
    with django_assert_max_num_queries(len(one)):
        cold = _studies(rad_api)
    with django_assert_max_num_queries(len(one) - 1):
        warm = _studies(rad_api)
    assert warm == cold and len(cold) == 7
    assert value(cold[f"{STUDY}.3"], "00201208") == 2 and value(cold[f"{STUDY}.3"], "00080061") == "MG"


def test_a_study_answer_follows_its_images_when_they_arrive_or_are_refiled(rad_api, admin_user, radiologist, study):
    """The cached summary is keyed by what the study's images are: an image that arrives or leaves changes the
    key, so the next search answers the study as it is now."""
    found = _studies(rad_api, f"&StudyInstanceUID={STUDY}")[STUDY]
    assert (value(found, "00201206"), value(found, "00201208")) == (2, 2)
    ds = mg_dataset(study_uid=STUDY, laterality="L", view="MLO", patient_id="PAT-0023", seed=5)
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.99.23.9"
    ingest_file(file=io.BytesIO(to_bytes(ds)), user=radiologist)
    found = _studies(rad_api, f"&StudyInstanceUID={STUDY}")[STUDY]
    assert (value(found, "00201206"), value(found, "00201208")) == (3, 3)
    filing.refile_image(image=study[1], user=admin_user, reason="another woman's image", patient_id="PAT-0024")
    found = _studies(rad_api)
    assert (value(found[STUDY], "00201206"), value(found[STUDY], "00201208")) == (2, 2)
    moved = Image.objects.get(pk=study[1].pk).study.study_uid
    assert value(found[moved], "00201208") == 1 and name(found[moved]) == "Doe^Jane^^Dr"
