"""Monitoring in the REST API (admins): the same figures and plots as the page, on-demand runs, acknowledgement."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from screening.api.permissions import IsPortalAdmin
from screening.audit.services import client_ip
from screening.models import ModelVersion, MonitoringAlert
from screening.monitoring import selectors, services
from screening.monitoring.report import alert_dict, dashboard, run_dict


class AcknowledgeSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class MonitoringDetail(APIView):
    """GET: a version's monitoring (drift, subgroups with CIs, history, alerts, and the plots as SVG)."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="monitoring_model_retrieve", responses=OpenApiTypes.OBJECT)
    def get(self, request, pk: int):
        return Response(dashboard(get_object_or_404(ModelVersion, pk=pk)))


class MonitoringRunCreate(APIView):
    """POST: queue a monitoring run of the version now (202)."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="monitoring_run_create", request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)
        run = services.request_run(version=version, user=request.user, ip_address=client_ip(request))
        return Response(run_dict(run), status=status.HTTP_202_ACCEPTED)


class AlertList(APIView):
    """GET: alerts, newest first (?open=1: only those waiting for acknowledgement)."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(operation_id="monitoring_alerts_list", responses=OpenApiTypes.OBJECT)
    def get(self, request):
        alerts = (
            selectors.open_alerts()[:200] if request.query_params.get("open") else selectors.recent_alerts(limit=200)
        )
        return Response({"results": [alert_dict(a) for a in alerts]})


class AlertAcknowledge(APIView):
    """POST: acknowledge an alert (once; audited)."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(
        operation_id="monitoring_alert_acknowledge", request=AcknowledgeSerializer, responses=OpenApiTypes.OBJECT
    )
    def post(self, request, pk: int):
        alert = get_object_or_404(MonitoringAlert, pk=pk)
        body = AcknowledgeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.acknowledge(
            alert=alert, user=request.user, note=body.validated_data.get("note", ""), ip_address=client_ip(request)
        )
        return Response(alert_dict(MonitoringAlert.objects.select_related("acknowledgement__user").get(pk=alert.pk)))
