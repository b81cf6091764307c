from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from .. import selectors, services
from .serializers import ImageSerializer, ImageUploadSerializer


class ImageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Mammograms: upload (DICOM or image file), list and detail."""

    serializer_class = ImageSerializer
    parser_classes = [MultiPartParser]

    def get_queryset(self):
        return selectors.images_visible_to(self.request.user)

    @extend_schema(request=ImageUploadSerializer, responses={200: ImageSerializer, 201: ImageSerializer})
    def create(self, request):
        form = ImageUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        result = services.ingest_file(
            file=data["file"],
            filename=data["file"].name,
            patient_id=data.get("patient_id", ""),
            laterality=data.get("laterality", ""),
            view=data.get("view", ""),
            accession_number=data.get("accession_number", ""),
            user=request.user,
            ip_address=services.client_ip(request),
            via="api",
        )
        return Response(
            ImageSerializer(result.image).data, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )
