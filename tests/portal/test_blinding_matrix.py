"""Blinding as a matrix: every face that can carry the AI result, against every role.

The case: double reading with the AI hidden from readers (`blind_ai`), a study scored 0.91 (above the
operating point) with its prediction, regions, heatmap, an AI-result SR and a vendor's CAD SR stored before the
policy hid the AI, and a later study of the same woman (whose viewer shows the first as her prior).

A radiologist who has not read the case, and an arbitrator with nothing to arbitrate, must learn nothing of
the AI from any face: no value, no filter or order that answers questions about it, no count; guessing an id
does not help (the server refuses). A reader who has read the case, an admin who does not read, and an API
client see it on every face they may open, which shows that each face's check can fail.
"""

from __future__ import annotations

import datetime as dt
import io

import pydicom
import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client
from pydicom.dataset import FileMetaDataset
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian, generate_uid

from screening.exchange import sr
from screening.intake.services.ingest import ingest_file
from screening.models import DicomExport, Image, ModelVersion, Prediction, Study
from screening.reading.services.reading import set_policy
from screening.reading.services.reviews import review_submit
from tests.cad_sr_factory import MASS, CadFinding, cad_sr_dataset
from tests.conftest import _token_client, _user
from tests.dicom_factory import to_bytes
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db

SCORE = 0.91
HIDDEN = {"blinded_reader", "idle_arbitrator"}
ROLES = ["blinded_reader", "idle_arbitrator", "reader_who_read", "admin", "api_client"]
READERS = {"blinded_reader", "idle_arbitrator", "reader_who_read", "admin"}  # may open the reading faces


class Case:
    """The scored study, its prediction and SR, the woman's later study, and one user with clients."""

    def __init__(self, role: str, django_user_model):
        self.admin = _user(django_user_model, "boss", "admin", is_staff=True)
        self.study = make_study("BLIND-1", SCORE, True)
        Study.objects.filter(pk=self.study.pk).update(
            study_date=dt.date(2026, 1, 5), exam_model=ModelVersion.objects.get(status="champion")
        )
        self.image = self.study.images.get()
        Prediction.objects.filter(image=self.image).delete()  # the one ingest queued
        self.prediction = Prediction.objects.create(
            image=self.image,
            model_version=ModelVersion.objects.get(status="champion"),
            status="done",
            probability=SCORE,
            logit=2.3,
            regions=[{"x": 10, "y": 12, "width": 30, "height": 30, "probability": SCORE}],
            heatmap=default_storage.save("heatmaps/h.png", ContentFile(b"\x89PNG fake")),
        )
        Image.objects.filter(pk=self.image.pk).update(status="predicted")
        self.sr_uid = self._ai_sr()
        with self.image.original.open("rb") as stored:  # a vendor's CAD SR of the image: its marks are AI too
            header = pydicom.dcmread(stored, stop_before_pixels=True)
        cad = cad_sr_dataset([header], [CadFinding(header, MASS, ((20.0, 20.0),), certainty=80)])
        ingest_file(file=io.BytesIO(to_bytes(cad)), filename="cad.dcm")
        later = make_study("BLIND-1", None, None, seed=2)
        Study.objects.filter(pk=later.pk).update(study_date=dt.date(2026, 6, 5))
        self.later = later
        # The policy hides the AI from readers only now: the SR above was made before.
        set_policy(user=self.admin, mode="double", blind_ai=True)
        self.role = role
        self.user = self._user(role, django_user_model)
        self.api = _token_client(self.user)
        self.page = Client()
        self.page.force_login(self.user)

    def _ai_sr(self) -> str:
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = Comprehensive3DSRStorage
        ds.SOPClassUID = Comprehensive3DSRStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = self.study.study_uid
        ds.SeriesInstanceUID = sr.series_uid(self.study, sr.AI)
        ds.Modality = "SR"
        ds.PatientID = "BLIND-1"
        ds.ContentDescription = f"AI exam score {SCORE}"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        name = default_storage.save("sr/ai.dcm", ContentFile(buffer.getvalue()))
        DicomExport.objects.create(
            study=self.study, kind="ai", destination="PACS@127.0.0.1:104", status="sent",
            sop_instance_uid=ds.SOPInstanceUID, sr_file=name,
        )  # fmt: skip
        return ds.SOPInstanceUID

    def _user(self, role: str, django_user_model):
        if role == "admin":
            return self.admin
        if role == "api_client":
            user = _user(django_user_model, "bridge", "api_client")
            user.user_permissions.add(Permission.objects.get(codename="view_all_studies"))
            return user
        # Readers made staff with the admin's view permissions: a careless admin's grant.
        group = "arbitrator" if role == "idle_arbitrator" else "radiologist"
        user = _user(django_user_model, role, group, is_staff=True)
        user.user_permissions.add(
            *Permission.objects.filter(codename__in=["view_study", "view_prediction", "view_review"])
        )
        if role == "reader_who_read":
            review_submit(study=self.study, radiologist=user, decision="normal", birads=1)
        return user

    @property
    def sees_ai(self) -> bool:
        return self.role not in HIDDEN


class NotApplicable(Exception):
    """This face is not one this user may open (or it cannot show them this case)."""


def _readers_only(case: Case) -> None:
    if case.role not in READERS:
        raise NotApplicable


def _rows(response) -> list[dict]:
    assert response.status_code == 200, response.content[:300]
    return response.json()["results"]


# Each face answers "did it tell this user the AI result?"; a refusal (400, 404) tells nothing.


def api_study_list(case: Case) -> bool:
    row = next(r for r in _rows(case.api.get("/api/v1/studies/")) if r["id"] == case.study.pk)
    return row["exam_score"] is not None or row["exam_flag"] is not None or row["exam_model"] is not None


def api_study_detail(case: Case) -> bool:
    body = case.api.get(f"/api/v1/studies/{case.study.pk}/").json()
    exports = [e for e in body.get("exports", []) if e["kind"] == "ai"]
    return any([body["exam_score"], body["threshold"], body["images"][0]["prediction"], exports])


def api_image_list(case: Case) -> bool:
    row = next(r for r in _rows(case.api.get("/api/v1/images/")) if r["id"] == case.image.pk)
    return row["prediction"] is not None


def api_image_detail(case: Case) -> bool:
    return case.api.get(f"/api/v1/images/{case.image.pk}/").json()["prediction"] is not None


def api_prediction_list(case: Case) -> bool:
    return bool(_rows(case.api.get("/api/v1/predictions/")))


def api_prediction_detail_by_id(case: Case) -> bool:
    response = case.api.get(f"/api/v1/predictions/{case.prediction.pk}/")
    assert response.status_code in (200, 404)
    return response.status_code == 200


def api_heatmap_by_id(case: Case) -> bool:
    response = case.api.get(f"/api/v1/predictions/{case.prediction.pk}/heatmap/")
    assert response.status_code in (200, 404)
    return response.status_code == 200


def _answers(case: Case, url: str) -> bool:
    """A filter or an order by the AI: refused (400, in the API's error shape) or answered."""
    response = case.api.get(url)
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "blinded"
        return False
    assert response.status_code == 200, response.content[:300]
    return True


def api_study_flag_filter(case: Case) -> bool:
    return _answers(case, "/api/v1/studies/?flag=above")


def api_study_score_order(case: Case) -> bool:
    return _answers(case, "/api/v1/studies/?ordering=-exam_score")


def api_image_flag_filter(case: Case) -> bool:
    return _answers(case, "/api/v1/images/?flag=below")


def api_worklist_values(case: Case) -> bool:
    _readers_only(case)
    rows = _rows(case.api.get("/api/v1/worklist/?status="))
    return any(r["exam_score"] is not None for r in rows)


def api_worklist_flag_filter(case: Case) -> bool:
    _readers_only(case)
    return _answers(case, "/api/v1/worklist/?flag=above&status=")


def api_worklist_score_order(case: Case) -> bool:
    _readers_only(case)
    return _answers(case, "/api/v1/worklist/?ordering=score")


def api_worklist_uncertainty_order(case: Case) -> bool:
    _readers_only(case)
    return _answers(case, "/api/v1/worklist/?ordering=uncertainty")


def api_reading_worklist(case: Case) -> bool:
    _readers_only(case)
    rows = [r for r in _rows(case.api.get("/api/v1/reading/worklist/")) if r["id"] == case.study.pk]
    if not rows:
        raise NotApplicable  # a case this user has read is not on their reading list
    return rows[0]["exam_score"] is not None


def worklist_page(case: Case) -> bool:
    _readers_only(case)
    page = case.page.get("/?status=").content.decode()
    return "0.91" in page or "above the operating point" in page


def worklist_page_score_order(case: Case) -> bool:
    _readers_only(case)
    response = case.page.get("/?status=&ordering=score&flag=above")
    assert response.status_code == 200
    page = response.content.decode()
    return "0.91" in page or f"#{case.study.pk}<" in page and "hidden until read" not in page


def viewer_data(case: Case) -> bool:
    _readers_only(case)
    data = case.page.get(f"/studies/{case.study.pk}/viewer-data/").json()
    return any("regions" in entry for entry in data["images"].values())


def viewer_data_vendor_cad(case: Case) -> bool:
    _readers_only(case)
    data = case.page.get(f"/studies/{case.study.pk}/viewer-data/").json()
    return any("cad" in entry for entry in data["images"].values())


def viewer_data_of_the_later_study(case: Case) -> bool:
    _readers_only(case)
    data = case.page.get(f"/studies/{case.later.pk}/viewer-data/").json()
    [prior] = data["priors"]
    assert prior["id"] == case.study.pk
    return "exam_score" in prior or "exam_flag" in prior or any("regions" in image for image in prior["images"])


def dicomweb_series(case: Case) -> bool:
    rows = case.api.get(f"/dicomweb/studies/{case.study.study_uid}/series").json()
    return any(row["00080060"]["Value"] == ["SR"] for row in rows)


def dicomweb_studies(case: Case) -> bool:
    rows = case.api.get("/dicomweb/studies?ModalitiesInStudy=SR").json()
    return bool(rows)


def dicomweb_ai_sr(case: Case) -> bool:
    url = f"/dicomweb/studies/{case.study.study_uid}/series/{sr.series_uid(case.study, sr.AI)}/instances/{case.sr_uid}"
    response = case.api.get(url, HTTP_ACCEPT="application/dicom")
    assert response.status_code in (200, 404)
    return response.status_code == 200


def admin_study_page(case: Case) -> bool:
    if not case.user.is_staff:
        raise NotApplicable
    change = case.page.get(f"/admin/screening/study/{case.study.pk}/change/")
    listing = case.page.get("/admin/screening/study/")
    assert change.status_code == listing.status_code == 200
    return "0.91" in change.content.decode() or "Exam score" in listing.content.decode()


def admin_predictions(case: Case) -> bool:
    if not case.user.is_staff:
        raise NotApplicable
    response = case.page.get(f"/admin/screening/prediction/{case.prediction.pk}/change/")
    assert response.status_code in (200, 302)  # the admin redirects a missing object to its list
    return response.status_code == 200


def admin_study_filter(case: Case) -> bool:
    if not case.user.is_staff:
        raise NotApplicable
    response = case.page.get("/admin/screening/study/?exam_flag__exact=1")
    assert response.status_code in (200, 400)  # 400: a lookup the admin does not allow
    row = f"/admin/screening/study/{case.study.pk}/change/"
    return response.status_code == 200 and row in response.content.decode()


FACES = [
    api_study_list,
    api_study_detail,
    api_image_list,
    api_image_detail,
    api_prediction_list,
    api_prediction_detail_by_id,
    api_heatmap_by_id,
    api_study_flag_filter,
    api_study_score_order,
    api_image_flag_filter,
    api_worklist_values,
    api_worklist_flag_filter,
    api_worklist_score_order,
    api_worklist_uncertainty_order,
    api_reading_worklist,
    worklist_page,
    worklist_page_score_order,
    viewer_data,
    viewer_data_vendor_cad,
    viewer_data_of_the_later_study,
    dicomweb_series,
    dicomweb_studies,
    dicomweb_ai_sr,
    admin_study_page,
    admin_predictions,
    admin_study_filter,
]


# A filter or an order answers for every row it covers: refused to any reader blinded at a site (even one
# who has read this case), since it would tell them of the cases they have not read.
QUERY_FACES = {
    "api_study_flag_filter",
    "api_study_score_order",
    "api_image_flag_filter",
    "api_worklist_flag_filter",
    "api_worklist_score_order",
    "api_worklist_uncertainty_order",
    "admin_study_filter",
}


def expected(case: Case, face: str) -> bool:
    return case.role in ("admin", "api_client") if face in QUERY_FACES else case.sees_ai


@pytest.mark.parametrize("role", ROLES)
def test_blinding_holds_on_every_face(role, champion, django_user_model):
    """One case per role (building it is most of the time), every face asked of it."""
    case = Case(role, django_user_model)
    told, opened = {}, []
    for face in FACES:
        try:
            told[face.__name__] = face(case)
        except NotApplicable:
            continue
        opened.append(face.__name__)
    wrong = sorted(name for name, shown in told.items() if shown is not expected(case, name))
    assert not wrong, f"{role}: these faces break the rule: {wrong}"
    assert len(opened) >= {"api_client": 11, "admin": 25}.get(role, 24)  # every face this role may open
