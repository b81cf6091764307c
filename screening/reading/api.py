"""Reading workflow in the API: my worklist, arbitration, policy, locks, assignment, outcomes, performance.

The same services and selectors as the pages; the same blinding (no AI score in a reader's
worklist while the policy hides it).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, mixins, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from screening.accounts.roles import can_arbitrate_list, can_record_outcomes
from screening.api.fields import visibility_of
from screening.api.pagination import WorkListPagination
from screening.api.permissions import CanReadCases, IsPortalAdmin
from screening.audit.services import client_ip
from screening.errors import PortalError
from screening.intake.selectors import (
    studies_visible_to,
)
from screening.intake.serializers import StudySerializer
from screening.models import Outcome, ReadingPolicy, Study
from screening.reading.forms import PerformanceForm, WorklistForm
from screening.reading.performance import performance
from screening.reading.rules import current_policies, expected_workload, policy_for
from screening.reading.selectors import WORKLIST_ORDERINGS, arbitration_worklist, reading_worklist_for, worklist_for
from screening.reading.services import outcomes
from screening.reading.services.reading import acquire_lock, assign, release_lock, set_policy
from screening.sites.selectors import clean_site


class CanArbitrate(BasePermission):
    message = "only arbitrators and admins see the arbitration worklist"

    def has_permission(self, request, view) -> bool:
        return can_arbitrate_list(request.user)


class CanRecordOutcomes(BasePermission):
    message = "recording outcomes needs the admin role or the 'Can add outcome' permission"

    def has_permission(self, request, view) -> bool:
        return can_record_outcomes(request.user)


class ReadingCaseSerializer(serializers.ModelSerializer):
    """A case on a reading worklist. The AI score is null while the policy hides it from readers."""

    patient = serializers.CharField(source="patient.patient_id", read_only=True)
    read = serializers.SerializerMethodField(help_text="first or second: the read this case needs next")
    locked_by = serializers.CharField(read_only=True, allow_null=True, help_text="who is reading it now")
    assigned_to = serializers.CharField(
        source="assigned_to.get_username", default=None, read_only=True, allow_null=True
    )
    exam_score = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = ["id", "study_uid", "accession_number", "study_date", "patient", "site", "status", "exam_score"]
        fields += ["read", "locked_by", "assigned_to"]
        read_only_fields = fields

    def get_read(self, study) -> str:
        return "second" if getattr(study, "reads", None) else "first"

    def get_exam_score(self, study) -> float | None:
        return study.exam_score if visibility_of(self).shows(study) else None


SITE_PARAMETER = OpenApiParameter("site", str, description="Site code (default: the default site)")


class ReadingWorklistView(generics.ListAPIView):
    """The cases of one site (`?site=`) that still need my read, in that site's policy order."""

    serializer_class = ReadingCaseSerializer
    permission_classes = [CanReadCases]
    filter_backends = []
    pagination_class = WorkListPagination

    @extend_schema(parameters=[SITE_PARAMETER])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        self.policy = policy_for(clean_site(self.request.query_params.get("site")))
        return reading_worklist_for(self.request.user, self.policy)


class ArbitrationWorklistView(generics.ListAPIView):
    """Discordant pairs awaiting arbitration or consensus."""

    serializer_class = ReadingCaseSerializer
    permission_classes = [CanArbitrate]
    filter_backends = []
    pagination_class = WorkListPagination

    def get_queryset(self):
        return arbitration_worklist(self.request.user)


class PolicySerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.get_username", default=None, read_only=True)

    class Meta:
        model = ReadingPolicy
        fields = ["id", "site", "mode", "triage_threshold", "resolution", "blind_ai", "order", "lock_minutes"]
        fields += ["note", "created_by", "created"]
        read_only_fields = ["id", "created_by", "created"]
        extra_kwargs = {
            "mode": {"required": True},
            "site": {"required": False},
            "triage_threshold": {"required": False},
        }


class PolicyView(APIView):
    """GET: the policy in force, its history and the expected workload (?threshold= for another
    AI triage score). POST: a new policy version (audited)."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(parameters=[OpenApiParameter("threshold", float), SITE_PARAMETER], responses=OpenApiTypes.OBJECT)
    def get(self, request):
        site = clean_site(request.query_params.get("site"))
        current = policy_for(site)
        threshold = request.query_params.get("threshold")
        if threshold not in (None, ""):
            # nan, inf and 1e999 parse as floats: refused here, not answered with a 500 when rendered
            form = serializers.FloatField(min_value=0.0, max_value=1.0)
            try:
                threshold = form.run_validation(threshold)
            except serializers.ValidationError:
                raise PortalError("threshold must be a number between 0 and 1", field="threshold") from None
        else:
            threshold = current.triage_threshold
        return Response(
            {
                "current": PolicySerializer(current).data,
                "expected_workload": expected_workload(threshold, ReadingPolicy.Mode.AI_TRIAGED, site),
                "threshold": threshold,
                "history": PolicySerializer(
                    ReadingPolicy.objects.filter(site=site).select_related("created_by")[:50], many=True
                ).data,
                "sites": {policy.site: policy.mode for policy in current_policies()},
            }
        )

    @extend_schema(request=PolicySerializer, responses={201: PolicySerializer})
    def post(self, request):
        form = PolicySerializer(data=request.data)
        form.is_valid(raise_exception=True)
        policy = set_policy(user=request.user, ip_address=client_ip(request), **form.validated_data)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


def _study_or_404(request, pk) -> Study:
    study = studies_visible_to(request.user).filter(pk=pk).first()
    if study is None:
        raise Http404("no such study")
    return study


class LockView(APIView):
    """POST takes (or keeps alive) my lock on a case: 409 with who holds it when someone else does.
    DELETE releases it."""

    permission_classes = [CanReadCases]

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request, pk):
        study = _study_or_404(request, pk)
        lock = acquire_lock(study=study, user=request.user, ip_address=client_ip(request))
        if not lock.held:
            return Response(
                {"error": {"code": "locked", "message": f"this case is being read by {lock.holder}"}},
                status=status.HTTP_409_CONFLICT,
            )
        return Response({"held": True, "expires": lock.expires})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, pk):
        study = _study_or_404(request, pk)
        release_lock(study=study, user=request.user, reason="leave", ip_address=client_ip(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AssignSerializer(serializers.Serializer):
    studies = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=500)
    reader = serializers.CharField(allow_null=True, help_text="user name; null to unassign")


class AssignView(APIView):
    """Assign or reassign studies to a reader (audited); never to one who already read them."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(request=AssignSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        form = AssignSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        name = form.validated_data["reader"]
        reader = None
        if name:
            reader = get_user_model().objects.filter(username=name, is_active=True).first()
            if reader is None:
                raise PortalError(f"no active user named {name}", field="reader")
        studies = list(Study.objects.filter(pk__in=form.validated_data["studies"]))
        if len(studies) != len(set(form.validated_data["studies"])):
            raise PortalError("some of these studies do not exist", field="studies")
        changed = assign(studies=studies, reader=reader, user=request.user, ip_address=client_ip(request))
        return Response({"changed": changed})


class OutcomeSerializer(serializers.ModelSerializer):
    study = serializers.PrimaryKeyRelatedField(queryset=Study.objects.all())
    recorded_by = serializers.CharField(source="recorded_by.get_username", read_only=True)

    class Meta:
        model = Outcome
        fields = ["id", "study", "laterality", "result", "cancer_type", "diagnosed_on", "source", "recorded_by"]
        fields += ["created"]
        read_only_fields = ["id", "source", "recorded_by", "created"]
        extra_kwargs = {"cancer_type": {"required": False}}


class OutcomeListView(generics.ListCreateAPIView):
    """Outcomes per breast, newest first; POST records one (audited; a newer one supersedes)."""

    serializer_class = OutcomeSerializer
    permission_classes = [CanRecordOutcomes]
    filter_backends = []

    def get_queryset(self):
        visible = studies_visible_to(self.request.user).values("pk")
        return Outcome.objects.filter(study__in=visible).select_related("recorded_by").order_by("-id")

    def create(self, request, *args, **kwargs):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        if not studies_visible_to(request.user).filter(pk=form.validated_data["study"].pk).exists():
            raise ValidationError({"study": ["no such study"]})  # the same answer as for an unknown id
        outcome = outcomes.record_outcome(
            item=outcomes.OutcomeInput(**form.validated_data),
            user=request.user,
            source="api",
            ip_address=client_ip(request),
        )
        return Response(OutcomeSerializer(outcome).data, status=status.HTTP_201_CREATED)


class OutcomeImportView(APIView):
    """Import outcomes from a CSV file (multipart field `file`): all lines or none."""

    permission_classes = [CanRecordOutcomes]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
        responses=OpenApiTypes.OBJECT,
    )
    def post(self, request):
        upload = request.FILES.get("file")
        if upload is None:
            raise PortalError("send the CSV as the multipart field 'file'", field="file")
        data = upload.read(outcomes.CSV_MAX_BYTES + 1)
        imported = outcomes.import_csv(data=data, user=request.user, ip_address=client_ip(request))
        return Response({"imported": imported}, status=status.HTTP_201_CREATED)


class PerformanceView(APIView):
    """The performance page's figures: per reader, per AI model version and for the programme."""

    permission_classes = [IsPortalAdmin]

    @extend_schema(
        parameters=[
            OpenApiParameter("date_from", OpenApiTypes.DATE),
            OpenApiParameter("date_to", OpenApiTypes.DATE),
            OpenApiParameter("density", str, enum=["", "A", "B", "C", "D"]),
            OpenApiParameter("site", str, description="Site code (default: every site)"),
        ],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request):
        form = PerformanceForm(request.query_params or None)
        if form.is_bound and not form.is_valid():
            raise ValidationError(form.errors.get_json_data())
        return Response(performance(form.filters()))


urlpatterns = [
    path("reading/worklist/", ReadingWorklistView.as_view(), name="api-reading-worklist"),
    path("reading/arbitration/", ArbitrationWorklistView.as_view(), name="api-reading-arbitration"),
    path("reading/policy/", PolicyView.as_view(), name="api-reading-policy"),
    path("reading/assign/", AssignView.as_view(), name="api-reading-assign"),
    path("reading/studies/<int:pk>/lock/", LockView.as_view(), name="api-reading-lock"),
    path("outcomes/", OutcomeListView.as_view(), name="api-outcome-list"),
    path("outcomes/import/", OutcomeImportView.as_view(), name="api-outcome-import"),
    path("performance/", PerformanceView.as_view(), name="api-performance"),
]


class WorklistViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The reading worklist: the same order and filters as the worklist page (unread first by default)."""

    serializer_class = StudySerializer
    permission_classes = [CanReadCases]

    def get_queryset(self):
        form = WorklistForm(self.request.query_params or None)
        if form.is_bound and not form.is_valid():
            raise exceptions.ValidationError(form.errors.get_json_data())
        return worklist_for(self.request.user, form.filters())

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=["unread", "", "new", "predicted", "in_review", "reported"]),
            OpenApiParameter("flag", str, enum=["", "above", "below", "none"]),
            OpenApiParameter("date_from", OpenApiTypes.DATE),
            OpenApiParameter("date_to", OpenApiTypes.DATE),
            OpenApiParameter("mine", bool),
            OpenApiParameter("ordering", str, enum=list(WORKLIST_ORDERINGS)),
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
