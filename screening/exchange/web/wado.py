"""WADO-RS: instances (the stored original, byte for byte, or a copy with identity replaced for
viewers who may not see it), metadata (DICOM JSON), frames (full bit depth) and rendered (PNG).
The SRs the portal wrote are instances too (instance and metadata; they have no frames or
rendition). Every request that opens a study's images is audited once ("dicomweb_retrieve")."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import numpy as np
import pydicom
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from PIL import Image as PILImage

from screening.accounts.roles import can_see_identity
from screening.errors import PortalError
from screening.exchange.web import multipart, negotiation
from screening.exchange.web.common import (
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
from screening.exchange.web.stow import stow
from screening.intake.services import renditions
from screening.models import Image

_CHUNK = 1 << 20
log = logging.getLogger(__name__)


def _opened(instance: Instance, viewer) -> pydicom.Dataset:
    """The stored file as a dataset, with its current filing written in (a refiled image) and, for a viewer
    who may not see identity, PatientID replaced by the viewer's pseudonym and other identity removed."""
    with default_storage.open(file_name(instance), "rb") as fh:
        ds = pydicom.dcmread(fh, force=True)
    if refiled(instance):
        apply_filing(ds, instance)
    if not can_see_identity(viewer):
        hide_identity(ds, instance.study, viewer)  # deid: pseudonym, PatientIdentityRemoved and the method
    return ds


class _Part:
    """One instance of a retrieval in the negotiated transfer syntax: the stored bytes when they may go as
    they are (the syntax asked for, a viewer who may see identity, a filing nobody corrected), else the
    dataset rewritten and re-encoded."""

    def __init__(self, instance: Instance, viewer, wanted: str):
        self.instance, self.viewer = instance, viewer
        self.stored = negotiation.stored_syntax(dicom_header(file_name(instance)))
        self.syntax = negotiation.served_syntax(self.stored, wanted, has_pixels=isinstance(instance, Image))

    def stored_as_is(self) -> bool:
        return self.syntax == self.stored and can_see_identity(self.viewer) and not refiled(self.instance)

    def content_type(self) -> str:
        return f"application/dicom; transfer-syntax={self.syntax}"

    def chunks(self) -> Iterator[bytes]:
        if self.stored_as_is():
            with default_storage.open(file_name(self.instance), "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
            return
        ds = _opened(self.instance, self.viewer)
        try:
            if self.syntax == self.stored:  # only identity replaced: nothing to decode
                data = negotiation.encode(ds, self.syntax)
            else:
                with renditions.decode_slot():  # transcodings count as decodes (PORTAL_MAX_CONCURRENT_DECODES)
                    data = negotiation.encode(ds, self.syntax)
        except PortalError:
            raise
        except Exception:  # the type only: pydicom's text may quote the data
            log.error("could not transcode an instance of study %s to %s", self.instance.study.pk, self.syntax)
            raise
        yield data


def _dicom_only(found: list[Instance]) -> list[Instance]:
    """The instances that are DICOM files (images uploaded as DICOM, and SRs); none: 404."""
    dicom = [i for i in found if isinstance(i, Report) or i.file_format == Image.Format.DICOM]
    if not dicom:
        raise PortalError("this image was uploaded as a picture, not a DICOM file", code="not_dicom", status=404)
    return dicom


def _retrieve_instances(request, study, series=None, sop=None):
    choice = negotiation.dicom_choice(request.headers.get("Accept", ""), single=sop is not None)
    found = study_or_404(request.user, study)
    selected = _dicom_only(instances(found, series, sop, viewer=request.user))
    audit(request, found, "instances", selected)
    parts = [_Part(instance, request.user, choice.transfer_syntax) for instance in selected]
    if not choice.multipart:
        part = parts[0]
        if part.stored_as_is():
            # The stored file as it is: a FileResponse, so the WSGI server sends it with sendfile() (no copy
            # through Python) and the browser knows its length (the viewer's per-image progress).
            return FileResponse(default_storage.open(file_name(selected[0]), "rb"), content_type="application/dicom")
        try:  # encoded before the answer starts, so a failure is still an error answer
            body = b"".join(part.chunks())
        except PortalError:  # busy (503)
            raise
        except Exception:
            raise PortalError("the stored instance cannot be transcoded", code="invalid_pixel_data") from None
        return StreamingHttpResponse(iter([body]), content_type=part.content_type())
    boundary = uuid.uuid4().hex
    return StreamingHttpResponse(
        multipart.write(((part.content_type(), part.chunks()) for part in parts), boundary),
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
        parts = (("application/octet-stream", iter([available[n - 1]])) for n in numbers)
        return StreamingHttpResponse(
            multipart.write(parts, boundary),
            content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}',
        )


THUMBNAIL_SIDE = 256


def _picture(image: Image, media: str, max_side: int | None = None) -> HttpResponse:
    """The image's display rendition as JPEG or PNG, scaled down to `max_side` when given."""
    with default_storage.open(image.rendition.name, "rb") as fh:
        picture = PILImage.open(fh)
        picture.load()
    if max_side is not None:
        picture.thumbnail((max_side, max_side))
    elif media == "image/png":
        return FileResponse(default_storage.open(image.rendition.name, "rb"), content_type="image/png")
    buffer = io.BytesIO()
    if media == "image/jpeg":
        picture.convert("L" if picture.mode in ("L", "I", "I;16") else "RGB").save(buffer, format="JPEG", quality=90)
    else:
        picture.save(buffer, format="PNG")
    return HttpResponse(buffer.getvalue(), content_type=media)


class RenderedView(DicomWebView):
    """The display rendition of an image: image/jpeg (the default) or image/png; anything else 406."""

    def get(self, request, study, series, sop):
        media = negotiation.image_choice(request.headers.get("Accept", ""))
        found = study_or_404(request.user, study)
        image = _image(instances(found, series, sop, viewer=request.user), "a rendition")
        if not image.rendition:  # not made yet by the render worker, or the pixel data cannot be decoded
            raise renditions.not_rendered(image)
        audit(request, found, "rendered", [image])
        return _picture(image, media)


class ThumbnailView(DicomWebView):
    """A small picture of a study, series or instance (its first image with a rendition)."""

    def get(self, request, study, series=None, sop=None):
        media = negotiation.image_choice(request.headers.get("Accept", ""))
        found = study_or_404(request.user, study)
        images = [i for i in instances(found, series, sop, viewer=request.user) if isinstance(i, Image)]
        shown = next((i for i in images if i.rendition), None)
        if shown is None:
            if not images:
                raise PortalError("a structured report has no thumbnail", code="not_found", status=404)
            raise renditions.not_rendered(images[0])
        audit(request, found, "thumbnail", [shown])
        return _picture(shown, media, THUMBNAIL_SIDE)
