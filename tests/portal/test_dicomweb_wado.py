"""WADO-RS negotiation (PS3.18 8.7): the transfer syntax and media type a client asks for, transcoding
where the portal can (explicit and implicit VR little endian always; RLE, JPEG 2000 and JPEG-LS
lossless), 406 where it cannot; rendered images as JPEG or PNG, and thumbnails."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from screening.exchange.web import series_uid
from screening.exchange.web.negotiation import dicom_choice, media_ranges
from screening.intake.selectors import pseudonym
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def compressed(syntax: str, **kwargs) -> pydicom.Dataset:
    ds = mg_dataset(**kwargs)
    ds.compress(syntax, generate_instance_uid=False)
    return ds


@pytest.fixture
def j2k(radiologist):
    """A mammogram stored as JPEG 2000 lossless, and its pixels."""
    ds = compressed(JPEG2000Lossless, patient_id="PAT-J2K")
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), user=radiologist).image
    return image, pydicom.dcmread(io.BytesIO(to_bytes(ds))).pixel_array


def url(image) -> str:
    return f"/dicomweb/studies/{image.study.study_uid}/series/{series_uid(image)}/instances/{image.sop_uid}"


def parts(response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    boundary = re.search(r"boundary=([^;]+)", response["Content-Type"]).group(1).encode()
    body = b"".join(response.streaming_content)
    found = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        found.append((head.decode().split(":", 1)[1].strip(), content[:-2]))
    return found


def test_no_transfer_syntax_means_explicit_vr_little_endian_not_the_compressed_original(rad_api, j2k):
    image, pixels = j2k
    for accept in ("application/dicom", None, 'multipart/related; type="application/dicom"'):
        extra = {"HTTP_ACCEPT": accept} if accept else {}
        response = rad_api.get(url(image), **extra)
        assert response.status_code == 200
        if response["Content-Type"].startswith("multipart/related"):
            ((content_type, content),) = parts(response)
        else:
            content_type, content = response["Content-Type"], b"".join(response.streaming_content)
        assert content_type == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
        ds = pydicom.dcmread(io.BytesIO(content))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPInstanceUID == image.sop_uid and np.array_equal(ds.pixel_array, pixels)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_a_requested_lossless_syntax_is_what_comes_back_with_every_stored_value(rad_api, j2k, syntax):
    image, pixels = j2k
    response = rad_api.get(
        url(image), HTTP_ACCEPT=f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    )
    ((content_type, content),) = parts(response)
    assert content_type == f"application/dicom; transfer-syntax={syntax}"
    ds = pydicom.dcmread(io.BytesIO(content))
    assert ds.file_meta.TransferSyntaxUID == syntax and np.array_equal(ds.pixel_array, pixels)


def test_transfer_syntax_star_is_the_original_byte_for_byte(rad_api, j2k):
    image, _ = j2k
    response = rad_api.get(url(image), HTTP_ACCEPT="application/dicom; transfer-syntax=*")
    with open(image.original.path, "rb") as fh:
        assert b"".join(response.streaming_content) == fh.read()


def test_the_first_acceptable_choice_wins_and_nothing_acceptable_is_406(rad_api, j2k):
    image, _ = j2k
    lossy_first = (
        f"application/dicom; transfer-syntax={JPEGBaseline8Bit}, "
        f"application/dicom; transfer-syntax={RLELossless}; q=0.5"
    )
    response = rad_api.get(url(image), HTTP_ACCEPT=lossy_first)
    assert pydicom.dcmread(io.BytesIO(b"".join(response.streaming_content))).file_meta.TransferSyntaxUID == RLELossless
    for accept in ("text/html", f"application/dicom; transfer-syntax={JPEGBaseline8Bit}", "image/jpeg"):
        refused = rad_api.get(url(image), HTTP_ACCEPT=accept)
        assert refused.status_code == 406 and refused.json()["error"]["code"] == "not_acceptable"


def test_a_pseudonymised_transcoded_copy_keeps_no_identity(api, api_client_user):
    ds = compressed(RLELossless, patient_id="OWN-J")
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), user=api_client_user).image
    content = b"".join(api.get(url(image), HTTP_ACCEPT="application/dicom").streaming_content)
    copy = pydicom.dcmread(io.BytesIO(content))
    assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert copy.PatientID == pseudonym("OWN-J", api_client_user) and not copy.get("PatientBirthDate")
    assert copy.PatientIdentityRemoved == "YES"


def test_accept_headers_are_ordered_by_quality_then_position():
    ranges = media_ranges('image/png;q=0.5, multipart/related; type="application/dicom"; q=0.9, */*;q=0.1')
    assert [r.media for r in ranges] == ["multipart/related", "image/png", "*/*"]
    assert dicom_choice("", single=True).transfer_syntax == ExplicitVRLittleEndian


def test_rendered_is_jpeg_by_default_png_when_asked_and_406_otherwise(rad_api, radiologist):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), user=radiologist).image
    renditions.render_image(image.pk)
    jpeg = rad_api.get(url(image) + "/rendered", HTTP_ACCEPT="image/jpeg")
    assert jpeg["Content-Type"] == "image/jpeg" and PILImage.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert rad_api.get(url(image) + "/rendered")["Content-Type"] == "image/jpeg"
    png = rad_api.get(url(image) + "/rendered", HTTP_ACCEPT="image/png")
    assert PILImage.open(io.BytesIO(b"".join(png.streaming_content))).format == "PNG"
    assert rad_api.get(url(image) + "/rendered", HTTP_ACCEPT="application/dicom").status_code == 406


def test_thumbnails_of_a_study_series_and_instance_are_small_jpegs(rad_api, radiologist):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), user=radiologist).image
    study = f"/dicomweb/studies/{image.study.study_uid}"
    assert rad_api.get(study + "/thumbnail").json()["error"]["code"] == "not_rendered"
    renditions.render_image(image.pk)
    for path in (study, f"{study}/series/{series_uid(image)}", url(image)):
        response = rad_api.get(path + "/thumbnail")
        picture = PILImage.open(io.BytesIO(response.content))
        assert response["Content-Type"] == "image/jpeg" and picture.format == "JPEG" and max(picture.size) <= 256


def test_a_comma_inside_a_quoted_parameter_does_not_split_the_accept_header():
    ranges = media_ranges('multipart/related; type="application/dicom, x"; transfer-syntax=*, image/png')
    assert [r.media for r in ranges] == ["multipart/related", "image/png"]
    assert ranges[0].params["type"] == "application/dicom, x"
