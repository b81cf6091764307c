"""REST API under /api/v1/. Thin: parse, call a selector or a service, serialise."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from screening.accounts.roles import can_read_cases, can_see_identity
from screening.ai.services.predictions import rerun_studies
from screening.ai.services.registry import serving_champion
from screening.api.filters import ImageFilter, StudyFilter
from screening.api.idempotency import idempotent
from screening.api.media import JPEG, PNG, stream_jpeg, stream_png
from screening.api.pagination import KeysetPagination
from screening.api.parsers import DicomFileParser
from screening.api.permissions import CanReadCases
from screening.audit.services import client_ip
from screening.intake.selectors import images_visible_to, patients_visible_to, study_detail
from screening.intake.serializers import (
    CadReportSerializer,
    ImageSerializer,
    ImageUploadSerializer,
    PatientSerializer,
    StudyCaseSerializer,
    StudyDetailSerializer,
    StudySerializer,
)
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.intake.services.renditions import full_resolution_png, preview_jpeg
from screening.models import Study
from screening.reading.assessment import SIDE_NAMES
from screening.reading.selectors import WorklistFilters, next_study_after, reviews_of, worklist_for
from screening.reading.serializers import ReviewInputSerializer, ReviewSerializer
from screening.reading.services.findings import ReportedFindingInput
from screening.reading.services.reviews import FindingInput, review_submit


def upload_channel(request) -> str:
    """How the upload came, for the audit trail: the upload page posts with the browser
    session, a program with its token."""
    return "page" if isinstance(request.successful_authenticator, SessionAuthentication) else "api"


class DicomRenderer(JSONRenderer):
    """Lets a client that accepts only `application/dicom` (the viewer's DICOM loader) reach a view that
    answers a Part 10 file itself; its errors are rendered as JSON (ImageViewSet.handle_exception)."""

    media_type = "application/dicom"
    format = "dcm"


class JpegRenderer(JSONRenderer):
    """Lets a client that accepts only `image/jpeg` (or `image/*`) reach the preview, which answers its JPEG
    itself; its errors are rendered as JSON (ImageViewSet.handle_exception)."""

    media_type = "image/jpeg"
    format = "jpg"


class NoPatientIdInQueryMixin:
    """A patient id in a query string lands in access logs and browser history. The old
    `patient` filter took one: refuse it loudly rather than ignore it and answer every study."""

    def filter_queryset(self, queryset):
        if "patient" in self.request.query_params:
            raise exceptions.ValidationError(
                {"patient": ["filter by patient_number (the portal's number for the patient), never by patient id"]}
            )
        return super().filter_queryset(queryset)


def _placeholder(image, *, preview: bool) -> HttpResponse:
    """202 with a grey picture of the picture's size while the render worker has not made it; 409 once it failed."""
    if image.error:
        raise renditions.not_rendered(image)
    if preview:
        response = HttpResponse(renditions.placeholder_jpeg(image), content_type="image/jpeg", status=202)
    else:
        response = HttpResponse(renditions.placeholder_png(image), content_type="image/png", status=202)
    response["Retry-After"] = "2"
    response["Cache-Control"] = "no-store"
    return response


class ImageViewSet(
    NoPatientIdInQueryMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Mammograms: upload (DICOM or image file), list and detail with the current prediction."""

    serializer_class = ImageSerializer
    pagination_class = KeysetPagination
    parser_classes = [MultiPartParser, DicomFileParser]
    filter_backends = [DjangoFilterBackend]
    filterset_class = ImageFilter
    throttle_scope = "uploads"

    def get_queryset(self):
        return images_visible_to(self.request.user)

    def get_throttles(self):
        return [ScopedRateThrottle()] if self.action == "create" else []

    def handle_exception(self, exc):
        # An error is the JSON error shape, and says so, also to a client that accepted only DICOM.
        if isinstance(getattr(self.request, "accepted_renderer", None), (DicomRenderer, JpegRenderer)):
            self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return super().handle_exception(exc)

    @extend_schema(
        request=ImageUploadSerializer,
        responses={200: ImageSerializer, 201: ImageSerializer},  # a CAD SR: CadReportSerializer
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @idempotent
    def create(self, request):
        """Upload one file: multipart (`file` and the optional fields), or a DICOM as the whole body with
        `Content-Type: application/dicom`. The same file again answers 200 with the existing image instead of 201."""
        upload = request.FILES.get("file")
        try:
            form = ImageUploadSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            data = form.validated_data
            result = ingest_file(
                file=data["file"],
                filename=data["file"].name,
                patient_id=data.get("patient_id", ""),
                laterality=data.get("laterality", ""),
                view=data.get("view", ""),
                accession_number=data.get("accession_number", ""),
                user=request.user,
                ip_address=client_ip(request),
                via=upload_channel(request),
                site=data.get("site") or request.query_params.get("site", ""),
            )
        finally:
            # Django closes multipart files with the request, not a body the DICOM parser streamed to disk:
            # close it here (its temporary file is gone once stored; anything left is removed now).
            if upload is not None:
                upload.close()
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        if result.image is None:  # a vendor's Mammography CAD SR, kept with its study
            return Response(CadReportSerializer(result.cad_report).data, status=code)
        return Response(ImageSerializer(result.image, context={"request": request}).data, status=code)

    @extend_schema(responses=PNG)
    @action(detail=True, methods=["get"])
    def rendition(self, request, pk=None):
        """The display rendition: 8-bit PNG, presentation LUTs applied, longest side capped.

        Until the render worker has made it: 202 with a grey placeholder of the same size
        (`Retry-After`); an image whose pixel data cannot be decoded: 409 with the reason."""
        image = self.get_object()
        if not image.rendition:
            return _placeholder(image, preview=False)
        return stream_png(image.rendition.name)

    @extend_schema(responses=JPEG)
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, JpegRenderer])
    def preview(self, request, pk=None):
        """The display rendition scaled down to at most 1024 pixels a side: 8-bit greyscale JPEG, the same grey
        levels, for the viewer's first paint. Made with the rendition (on first request for older images).

        Until the render worker has made it: 202 with a grey placeholder JPEG of the preview's size
        (`Retry-After`); an image whose pixel data cannot be decoded: 409 with the reason."""
        image = self.get_object()
        if not image.rendition:
            return _placeholder(image, preview=True)
        return stream_jpeg(preview_jpeg(image))

    @extend_schema(
        responses={(200, "application/dicom"): OpenApiResponse(OpenApiTypes.BINARY, description="DICOM Part 10")}
    )
    @action(detail=True, methods=["get"], renderer_classes=[DicomRenderer, JSONRenderer])
    def pixels(self, request, pk=None):
        """The image's stored values as a DICOM Part 10 file: a DICOM image's stored original; an uploaded
        picture (PNG/JPEG) wrapped at full bit depth, windowed as the renditions show it (no patient data)."""
        image = self.get_object()
        if image.file_format == image.Format.DICOM:
            if not image.original or not default_storage.exists(image.original.name):
                raise Http404("file missing")
            response = FileResponse(default_storage.open(image.original.name, "rb"), content_type="application/dicom")
        else:
            response = HttpResponse(renditions.picture_as_dicom(image), content_type="application/dicom")
        response["Cache-Control"] = "no-store"  # pixel data, as the DICOM instances
        return response

    @extend_schema(responses=PNG)
    @action(detail=True, methods=["get"])
    def full(self, request, pk=None):
        """Full-resolution 8-bit PNG for zooming in (made by the render worker; 409 until then)."""
        return stream_png(full_resolution_png(self.get_object()))


class PatientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Patients: identity for radiologists, admins and clients granted 'Can view patient'; pseudonyms otherwise."""

    serializer_class = PatientSerializer

    def get_queryset(self):
        patients = patients_visible_to(self.request.user)
        if self.action == "retrieve" and not can_see_identity(self.request.user):
            # By number, a patient found would tell her portal number: see PatientSerializer.
            return patients.none()
        return patients


class StudyViewSet(
    NoPatientIdInQueryMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Studies with their exam-level AI result; detail includes images and predictions, and reviews for readers."""

    filter_backends = [DjangoFilterBackend]
    filterset_class = StudyFilter

    def get_queryset(self):
        return worklist_for(self.request.user, WorklistFilters(status="", ordering="date"))

    def get_serializer_class(self):
        if self.action != "retrieve":
            return StudySerializer
        # Decisions, notes and reader names only for those /studies/<id>/reviews/ admits.
        return StudyCaseSerializer if can_read_cases(self.request.user) else StudyDetailSerializer

    @extend_schema(
        responses=OpenApiResponse(
            StudyCaseSerializer,
            description="API clients get it without `reviews`, `exports` and `hl7_exports` (radiologists and "
            "admins only).",
        )
    )
    def retrieve(self, request, pk=None):
        try:
            study = study_detail(request.user, pk)
        except (Study.DoesNotExist, ValueError):
            raise Http404("no such study") from None
        return Response(self.get_serializer(study).data)

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer("Queued", {"queued": serializers.ListField(child=serializers.IntegerField())})
        },
    )
    @action(detail=True, methods=["post"], permission_classes=[CanReadCases])
    def predict(self, request, pk=None):
        """Predict the study again with the champion model (earlier predictions keep their versions)."""
        study = self.get_object()
        serving_champion()
        return Response(
            {"queued": rerun_studies([study], user=request.user, ip_address=client_ip(request))},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(methods=["GET"], responses=ReviewSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=ReviewInputSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={
            201: inline_serializer(
                "ReviewCreated", {"review": ReviewSerializer(), "next_url": serializers.CharField(allow_null=True)}
            )
        },
    )
    @action(detail=True, methods=["get", "post"], permission_classes=[CanReadCases])
    def reviews(self, request, pk=None):
        """Decision history (newest first); POST records a decision, or a correction as a new version."""
        study = self.get_object()
        if request.method == "GET":
            return Response(ReviewSerializer(reviews_of(study, request.user), many=True).data)
        return self._submit_review(request, study)

    @idempotent
    def _submit_review(self, request, study):
        form = ReviewInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        review = review_submit(
            study=study,
            radiologist=request.user,
            decision=data.get("decision"),
            birads=data.get("birads"),
            breasts=None
            if "right" not in data and "left" not in data
            else {
                side: (data[name]["decision"], data[name]["birads"])
                for side, name in SIDE_NAMES.items()
                if name in data
            },
            density=data["density"],
            note=data["note"],
            findings=None
            if "findings" not in data
            else [
                FindingInput(
                    image_id=f["image"], type=f["type"], x=f["x"], y=f["y"], width=f["width"], height=f["height"]
                )
                for f in data["findings"]
            ],
            reported=None
            if "reported_findings" not in data
            else [ReportedFindingInput(**{**f, "marks": tuple(f["marks"])}) for f in data["reported_findings"]],
            ip_address=client_ip(request),
        )
        following = next_study_after(request.user, study)
        return Response(
            {
                "review": ReviewSerializer(review).data,
                "next_url": reverse("study-viewer", args=[following.pk]) if following else None,
            },
            status=status.HTTP_201_CREATED,
        )
