"""Research exports in the REST API (admins): projects, export requests, progress and the one download."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from screening.api.permissions import IsPortalAdmin
from screening.audit.services import client_ip
from screening.models import ResearchExport, ResearchProject
from screening.research_export import selectors, services
from screening.research_export.responses import export_json, peek, stream_once


class ProjectSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class ExportSerializer(serializers.Serializer):
    project = serializers.IntegerField(min_value=1, max_value=2**31 - 1)
    reason = serializers.CharField(max_length=2000)
    filters = serializers.DictField(required=False, default=dict)
    options = serializers.DictField(required=False, default=dict)


class ProjectList(APIView):
    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="research_projects_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        return Response({"results": [{"id": p.pk, "name": p.name} for p in selectors.projects()]})

    @extend_schema(
        operation_id="research_projects_create", request=ProjectSerializer, responses={201: OpenApiTypes.OBJECT}
    )
    def post(self, request):
        body = ProjectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = services.create_project(
            name=body.validated_data["name"], user=request.user, ip_address=client_ip(request)
        )
        return Response({"id": project.pk, "name": project.name}, status=status.HTTP_201_CREATED)


class ExportList(APIView):
    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="research_exports_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        services.release_stale_exports()
        return Response({"results": [export_json(e) for e in selectors.exports_of(request.user)[:200]]})

    @extend_schema(
        operation_id="research_exports_create", request=ExportSerializer, responses={202: OpenApiTypes.OBJECT}
    )
    def post(self, request):
        body = ExportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        project = get_object_or_404(ResearchProject, pk=body.validated_data["project"])
        export = services.request_export(
            project=project,
            user=request.user,
            reason=body.validated_data["reason"],
            filters=body.validated_data["filters"],
            options=body.validated_data["options"],
            ip_address=client_ip(request),
        )
        return Response(export_json(export), status=status.HTTP_202_ACCEPTED)


class ExportDetail(APIView):
    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="research_exports_retrieve", responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(export_json(get_object_or_404(selectors.exports_of(request.user), pk=pk)))


class ExportDownload(APIView):
    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="research_exports_download", responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, pk: int):
        export = get_object_or_404(ResearchExport.objects.select_related("project"), pk=pk)
        return stream_once(export, request)

    @extend_schema(exclude=True)
    def head(self, request, pk: int):
        """What a GET would answer, without using the one download."""
        return peek(get_object_or_404(ResearchExport.objects.select_related("project"), pk=pk), request)
