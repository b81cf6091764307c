"""WADO-RS: instances (the stored original, byte for byte, or a copy with identity replaced for
viewers who may not see it), metadata (DICOM JSON), frames (full bit depth) and rendered (PNG).
The SRs the portal wrote are instances too (instance and metadata; they have no frames or
rendition). Every request that opens a study's images is audited once ("dicomweb_retrieve")."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import numpy as np
import pydicom
from django.core.files.storage import default_storage
from django.http import FileResponse, StreamingHttpResponse

from ...errors import PortalError
from ...models import Image
from ...roles import can_see_identity
from ...services import renditions
from . import multipart
from .common import (
    DicomWebView,
    Instance,
    Report,
    StowThrottled,
    apply_filing,
    audit,
    dataset,
    dicom_header,
    dicom_json,
    file_name,
    hide_identity,
    instance_attributes,
    instances,
    patient,
    refiled,
    study_or_404,
)
from .stow import stow

_CHUNK = 1 << 20


def _rewritten(instance: Instance, viewer) -> bytes:
    """The stored file with its current filing written in (a refiled image) and, for a viewer who may not see
    identity, PatientID replaced by the viewer's pseudonym and other identity removed."""
    with default_storage.open(file_name(instance), "rb") as fh:
        ds = pydicom.dcmread(fh, force=True)
    if refiled(instance):
        apply_filing(ds, instance)
    if not can_see_identity(viewer):
        hide_identity(ds, instance.study, viewer)  # deid: pseudonym, PatientIdentityRemoved and the method
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _as_stored(instance: Instance, viewer) -> bool:
    """The stored bytes may go as they are: the viewer may see identity and nobody corrected the filing."""
    return can_see_identity(viewer) and not refiled(instance)


def _instance_chunks(instance: Instance, viewer) -> Iterator[bytes]:
    if _as_stored(instance, viewer):
        with default_storage.open(file_name(instance), "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    else:
        yield _rewritten(instance, viewer)


def _dicom_only(found: list[Instance]) -> list[Instance]:
    """The instances that are DICOM files (images uploaded as DICOM, and SRs); none: 404."""
    dicom = [i for i in found if isinstance(i, Report) or i.file_format == Image.Format.DICOM]
    if not dicom:
        raise PortalError("this image was uploaded as a picture, not a DICOM file", code="not_dicom", status=404)
    return dicom


def _wants_plain(request, media_type: str) -> bool:
    accept = request.headers.get("Accept", "")
    return media_type in accept and "multipart/related" not in accept


def _retrieve_instances(request, study, series=None, sop=None):
    found = study_or_404(request.user, study)
    selected = _dicom_only(instances(found, series, sop, viewer=request.user))
    audit(request, found, "instances", selected)
    if sop is not None and _wants_plain(request, "application/dicom"):
        if _as_stored(selected[0], request.user):
            # The stored file as it is: a FileResponse, so the WSGI server sends it with sendfile() (no copy
            # through Python) and the browser knows its length (the viewer's per-image progress).
            return FileResponse(default_storage.open(file_name(selected[0]), "rb"), content_type="application/dicom")
        return StreamingHttpResponse(_instance_chunks(selected[0], request.user), content_type="application/dicom")
    boundary = uuid.uuid4().hex
    parts = (_instance_chunks(instance, request.user) for instance in selected)
    return StreamingHttpResponse(
        multipart.write(parts, "application/dicom", boundary),
        content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def _metadata(instance: Instance, viewer) -> dict:
    if isinstance(instance, Image) and instance.file_format != Image.Format.DICOM:
        patient_id, patient_name = patient(instance.study, viewer)
        return {**instance_attributes(instance), **dataset(PatientID=patient_id, PatientName=patient_name)}
    ds = dicom_header(file_name(instance))
    if refiled(instance):
        apply_filing(ds, instance)
    if not can_see_identity(viewer):
        hide_identity(ds, instance.study, viewer)
    for element in list(ds):
        if element.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") and len(element.value or b"") > 1024:
            del ds[element.tag]
    body = ds.to_json_dict(bulk_data_threshold=1 << 30)
    body["00020010"] = {"vr": "UI", "Value": [str(ds.file_meta.get("TransferSyntaxUID", ""))]}
    return body


class StudyView(StowThrottled):
    """POST: STOW-RS into one study. GET: WADO-RS of the whole study."""

    def post(self, request, study):
        return stow(request, study)

    def get(self, request, study):
        return _retrieve_instances(request, study)


class MetadataView(DicomWebView):
    def get(self, request, study, series=None, sop=None):
        found = study_or_404(request.user, study)
        selected = instances(found, series, sop, viewer=request.user)
        audit(request, found, "metadata", selected)
        try:
            return dicom_json([_metadata(instance, request.user) for instance in selected])
        except PortalError:
            raise
        except Exception:  # a missing or damaged original; pydicom's text may quote patient data
            raise PortalError("the stored original cannot be read", code="invalid_dicom") from None


class SeriesView(DicomWebView):
    def get(self, request, study, series):
        return _retrieve_instances(request, study, series)


class InstanceView(DicomWebView):
    def get(self, request, study, series, sop):
        return _retrieve_instances(request, study, series, sop)


def _frame_bytes(image: Image) -> list[bytes]:
    """Every frame's pixels as stored values, uncompressed little-endian, full bit depth."""
    with default_storage.open(image.original.name, "rb") as fh:
        ds = pydicom.dcmread(fh, force=True)
    pixels = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[np.newaxis]
    bits = int(ds.BitsAllocated)
    dtype = np.dtype(f"<{'i' if int(ds.get('PixelRepresentation', 0)) else 'u'}{max(1, bits // 8)}")
    return [np.ascontiguousarray(frame.astype(dtype)).tobytes() for frame in pixels]


def _image(found: list[Instance], what: str) -> Image:
    """The image among the matched instances; an SR has no pixels: 404."""
    matched = [i for i in found if isinstance(i, Image)]
    if not matched:
        raise PortalError(f"a structured report has no {what}", code="not_found", status=404)
    return matched[0]


class FramesView(DicomWebView):
    def get(self, request, study, series, sop, frames):
        try:
            numbers = [int(n) for n in frames.split(",")]
        except ValueError:
            raise PortalError("frames must be a list of numbers", code="invalid", status=400) from None
        found = study_or_404(request.user, study)
        image = _dicom_only([_image(instances(found, series, sop, viewer=request.user), "frames")])[0]
        audit(request, found, "frames", [image])
        try:
            available = _frame_bytes(image)
        except Exception:
            raise PortalError("the stored pixel data cannot be decoded", code="invalid_pixel_data") from None
        if any(n < 1 or n > len(available) for n in numbers):
            raise PortalError(f"the instance has {len(available)} frame(s)", code="not_found", status=404)
        boundary = uuid.uuid4().hex
        parts = ([available[n - 1]] for n in numbers)
        return StreamingHttpResponse(
            multipart.write(parts, "application/octet-stream", boundary),
            content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
        )


class RenderedView(DicomWebView):
    def get(self, request, study, series, sop):
        found = study_or_404(request.user, study)
        image = _image(instances(found, series, sop, viewer=request.user), "a rendition")
        if not image.rendition:  # not made yet by the render worker, or the pixel data cannot be decoded
            raise renditions.not_rendered(image)
        audit(request, found, "rendered", [image])
        return FileResponse(default_storage.open(image.rendition.name, "rb"), content_type="image/png")
