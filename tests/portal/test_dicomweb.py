"""DICOMweb (screening.exchange.web): STOW-RS, QIDO-RS and WADO-RS, driven by dicomweb-client against a
live server, and malformed STOW bodies through Django's test client."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.core.files.storage import default_storage
from rest_framework.authtoken.models import Token

from screening.exchange.web import series_uid
from screening.intake.selectors import pseudonym
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image, Study
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes

live = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def dicomweb(live_server, user) -> DICOMwebClient:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    return DICOMwebClient(url=f"{live_server.url}/dicomweb", session=session)


def value(dataset: dict, tag: str):
    return dataset.get(tag, {}).get("Value", [None])[0]


@live
def test_dicomweb_client_stores_searches_and_retrieves_a_mammogram(live_server, radiologist, media_root):
    client = dicomweb(live_server, radiologist)
    # Read back from a file, so dicomweb-client writes it with its preamble (a conformant file).
    ds = pydicom.dcmread(io.BytesIO(to_bytes(mg_dataset(bits=12, patient_id="PAT-WEB"))))
    answer = client.store_instances([ds])
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert "FailedSOPSequence" not in answer
    image = Image.objects.get(sop_uid=ds.SOPInstanceUID)
    assert image.uploaded_by == radiologist
    assert AuditEvent.objects.filter(action="ingest", study=image.study, detail__via="stow").exists()

    study_uid, series = ds.StudyInstanceUID, ds.SeriesInstanceUID
    assert series_uid(image) == series  # the original header's series
    studies = client.search_for_studies(search_filters={"PatientID": "PAT-WEB", "StudyDate": "20260101-20261231"})
    assert [value(s, "0020000D") for s in studies] == [study_uid]
    assert value(studies[0], "00100020") == "PAT-WEB"  # a radiologist sees identity
    assert value(studies[0], "00201208") == 1 and value(studies[0], "00080061") == "MG"
    assert client.search_for_studies(search_filters={"StudyDate": "20250101"}) == []
    assert client.search_for_studies(search_filters={"AccessionNumber": "ACC1", "ModalitiesInStudy": "MG"})
    assert client.search_for_studies(search_filters={"AccessionNumber": "NOPE"}) == []
    assert [value(s, "0020000E") for s in client.search_for_series(study_uid)] == [series]
    instances = client.search_for_instances(study_uid, series)
    assert [value(i, "00080018") for i in instances] == [ds.SOPInstanceUID]
    assert (value(instances[0], "00280010"), value(instances[0], "00280011")) == (ds.Rows, ds.Columns)

    with default_storage.open(image.original.name, "rb") as fh:
        original = fh.read()
    retrieved = client.retrieve_instance(study_uid, series, ds.SOPInstanceUID)
    assert retrieved.SOPInstanceUID == ds.SOPInstanceUID and retrieved.PixelData == ds.PixelData
    raw = client._session.get(
        f"{live_server.url}/dicomweb/studies/{study_uid}/series/{series}/instances/{ds.SOPInstanceUID}",
        headers={"Accept": "application/dicom"},
    )
    assert raw.headers["Content-Type"] == "application/dicom" and raw.content == original  # byte for byte

    metadata = client.retrieve_instance_metadata(study_uid, series, ds.SOPInstanceUID)
    assert value(metadata, "00080018") == ds.SOPInstanceUID and "7FE00010" not in metadata

    frame = client.retrieve_instance_frames(study_uid, series, ds.SOPInstanceUID, frame_numbers=[1])[0]
    pixels = np.frombuffer(frame, dtype="<u2").reshape(ds.Rows, ds.Columns)
    assert pixels.max() > 255
    assert np.array_equal(pixels, pydicom.dcmread(io.BytesIO(original)).pixel_array)
    assert AuditEvent.objects.filter(action="dicomweb_retrieve", study=image.study).count() >= 4


@live
def test_an_api_client_sees_only_its_own_studies_and_pseudonyms(live_server, api_client_user, radiologist):
    own = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="MINE"))), user=api_client_user).image
    other = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="THEIRS", seed=1))), user=radiologist).image
    client = dicomweb(live_server, api_client_user)

    studies = client.search_for_studies()
    assert [value(s, "0020000D") for s in studies] == [own.study.study_uid]
    assert value(studies[0], "00100020") == pseudonym("MINE", api_client_user)
    assert "Value" not in studies[0]["00100010"]  # no name
    with pytest.raises(requests.HTTPError) as refused:
        client.search_for_studies(search_filters={"PatientID": "THEIRS"})
    assert refused.value.response.status_code == 403

    with pytest.raises(requests.HTTPError) as missing:
        client.search_for_series(other.study.study_uid)
    assert missing.value.response.status_code == 404
    with pytest.raises(requests.HTTPError) as missing:
        client.retrieve_instance(other.study.study_uid, series_uid(other), other.sop_uid)
    assert missing.value.response.status_code == 404

    # Its own instance comes back with identity replaced by its pseudonym.
    copy = client.retrieve_instance(own.study.study_uid, series_uid(own), own.sop_uid)
    assert copy.PatientID == pseudonym("MINE", api_client_user) and str(copy.PatientName) == ""
    assert copy.get("PatientBirthDate", "") == ""  # type 2: present and empty (dciodvfy), never the date
    assert copy.PatientIdentityRemoved == "YES" and copy.DeidentificationMethodCodeSequence
    metadata = client.retrieve_instance_metadata(own.study.study_uid, series_uid(own), own.sop_uid)
    assert value(metadata, "00100020") == pseudonym("MINE", api_client_user)


@live
def test_stow_of_a_ct_reports_the_failure_and_stores_nothing(live_server, api_client_user, media_root):
    client = dicomweb(live_server, api_client_user)
    ct = mg_dataset(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")
    with pytest.raises(requests.HTTPError) as refused:
        client.store_instances([ct])
    response = refused.value.response
    assert response.status_code == 409
    failed = response.json()["00081198"]["Value"][0]
    assert value(failed, "00081197") == 0xA900
    assert value(failed, "00081155") == ct.SOPInstanceUID
    assert not Study.objects.exists() and not Image.objects.exists()
    assert stored_files(media_root) == []


def _stow(client, body: bytes, content_type: str = 'multipart/related; type="application/dicom"; boundary=XYZ'):
    return client.generic("POST", "/dicomweb/studies", data=body, content_type=content_type)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"no boundary at all",
        b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nnot a dicom\r\n--XYZ--\r\n",  # a bad part: 409
        b"--XYZ\r\nContent-Type: application/dicom\r\n\r\nunterminated part",
        b"--XYZ\r\nContent-Type application/dicom\r\n\r\nx\r\n--XYZ--\r\n",  # header without colon
        b"--XYZ--\r\n",  # no part
    ],
)
def test_a_malformed_stow_body_is_a_client_error_never_a_500(api, body, media_root):
    response = _stow(api, body)
    assert response.status_code in (400, 409), response.content
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_stow_with_a_wrong_content_type_is_415(api):
    assert _stow(api, b"{}", "application/json").status_code == 415
    assert _stow(api, b"x", 'multipart/related; type="application/json"; boundary=XYZ').status_code == 415


def test_stow_needs_a_token_and_a_role(anon_api, outsider):
    from tests.conftest import _token_client

    assert _stow(anon_api, b"--XYZ--\r\n").status_code == 401
    assert _stow(_token_client(outsider), b"--XYZ--\r\n").status_code == 403


def test_stow_stores_the_good_part_and_reports_the_bad_one_with_202(api, media_root):
    good = to_bytes(mg_dataset())
    body = (
        b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + good + b"\r\n"
        b"--XYZ\r\nContent-Type: application/dicom\r\n\r\ngarbage\r\n--XYZ--\r\n"
    )
    response = _stow(api, body)
    assert response.status_code == 202
    assert len(response.json()["00081199"]["Value"]) == 1
    assert value(response.json()["00081198"]["Value"][0], "00081197") == 0xC000
    assert Image.objects.count() == 1


def test_stow_into_a_study_refuses_an_instance_of_another_study(api):
    content_type = 'multipart/related; type="application/dicom"; boundary=XYZ'
    body = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(mg_dataset()) + b"\r\n--XYZ--\r\n"
    response = api.generic("POST", "/dicomweb/studies/1.2.3", data=body, content_type=content_type)
    assert response.status_code == 409 and not Image.objects.exists()


def test_a_qido_search_by_bad_date_or_paging_is_400(rad_api):
    assert rad_api.get("/dicomweb/studies?StudyDate=2026-01-01").status_code == 400
    assert rad_api.get("/dicomweb/studies?limit=x").status_code == 400


def test_the_stow_parser_finds_boundaries_that_straddle_read_chunks(api, monkeypatch, media_root):
    monkeypatch.setattr("screening.exchange.web.multipart._CHUNK", 7)  # every delimiter falls across reads
    files = [to_bytes(mg_dataset(seed=seed)) for seed in (1, 2)]
    body = b"preamble\r\n" + b"".join(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n" for f in files)
    response = _stow(api, body + b"--XYZ--\r\nepilogue")
    assert response.status_code == 200, response.content
    stored = sorted((media_root / image.original.name).read_bytes() for image in Image.objects.all())
    assert stored == sorted(files)  # byte for byte


def test_a_part_over_the_upload_limit_fails_alone_with_a700(api, settings, media_root):
    small = to_bytes(mg_dataset(seed=1))
    large = to_bytes(mg_dataset(seed=2)) + b"\0" * 100  # the same size, and then some
    settings.PORTAL_MAX_UPLOAD_BYTES = len(small) + 10
    body = b"".join(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n" for f in (small, large))
    response = _stow(api, body + b"--XYZ--\r\n")
    assert response.status_code == 202
    assert value(response.json()["00081198"]["Value"][0], "00081197") == 0xA700
    assert Image.objects.count() == 1


def test_a_wado_request_is_audited_once_whatever_it_returns(rad_api, radiologist):
    study_uid = "1.2.826.0.1.3680043.99.7"
    for seed, side in enumerate("LR"):
        ingest_file(
            file=io.BytesIO(to_bytes(mg_dataset(study_uid=study_uid, laterality=side, seed=seed))), user=radiologist
        )
    response = rad_api.get(f"/dicomweb/studies/{study_uid}")
    parts = b"".join(response.streaming_content).count(b"Content-Type: application/dicom")
    assert response.status_code == 200 and parts == 2
    assert AuditEvent.objects.filter(action="dicomweb_retrieve").count() == 1
    assert rad_api.get(f"/dicomweb/studies/{study_uid}/metadata").status_code == 200
    assert AuditEvent.objects.filter(action="dicomweb_retrieve").count() == 2


def test_an_uploaded_picture_has_a_stable_series_and_no_dicom_instance(rad_api, radiologist):
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray((np.arange(256 * 200) % 251).astype(np.uint8).reshape(256, 200)).save(buffer, format="PNG")
    buffer.seek(0)
    image = ingest_file(
        file=buffer, filename="x.png", patient_id="P-PNG", laterality="L", view="CC", user=radiologist
    ).image
    study = image.study.study_uid
    series = rad_api.get(f"/dicomweb/studies/{study}/series").json()
    assert [value(s, "0020000E") for s in series] == [series_uid(image)]
    assert series_uid(image) not in (study, image.sop_uid)
    assert value(series[0], "00080060") == "OT"
    base = f"/dicomweb/studies/{study}/series/{series_uid(image)}/instances/{image.sop_uid}"
    assert rad_api.get(base).status_code == 404
    assert value(rad_api.get(base + "/metadata").json()[0], "00080018") == image.sop_uid
    assert rad_api.get(base + "/rendered").json()["error"]["code"] == "not_rendered"  # the render worker's turn
    renditions.render_image(image.pk)
    rendered = rad_api.get(base + "/rendered", HTTP_ACCEPT="image/png")
    assert rendered.status_code == 200 and rendered["Content-Type"] == "image/png"


def test_a_single_instance_is_the_stored_file_with_its_length_for_the_viewers_progress(rad_api, radiologist):
    """A reader's plain `Accept: application/dicom` instance is a file response (sendfile under gunicorn):
    byte for byte the original, with Content-Length, so the viewer's per-image progress has a total."""
    content = to_bytes(mg_dataset(seed=4))
    image = ingest_file(file=io.BytesIO(content), user=radiologist).image
    url = f"/dicomweb/studies/{image.study.study_uid}/series/{series_uid(image)}/instances/{image.sop_uid}"
    response = rad_api.get(url, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert int(response["Content-Length"]) == len(content)
    assert b"".join(response.streaming_content) == content
