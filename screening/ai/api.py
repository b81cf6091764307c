"""Model registry and training runs (admins only): metrics, operating point, promote, roll back, retrain."""

from __future__ import annotations

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from screening.ai import selectors as registry
from screening.ai.serializers import PredictionSerializer
from screening.ai.services import external_models, promotion, training
from screening.api.filters import PredictionFilter
from screening.api.media import PNG, stream_png
from screening.api.pagination import KeysetPagination
from screening.api.permissions import IsPortalAdmin
from screening.audit.services import client_ip
from screening.intake.selectors import predictions_visible_to
from screening.models import ModelVersion, TrainingRun


class TrainingRunSerializer(serializers.ModelSerializer):
    candidate = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    candidate_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "status",
            "triggered_by",
            "created",
            "started",
            "finished",
            "progress",
            "error",
            "candidate",
            "candidate_id",
            "snapshot_hash",
            "data_summary",
        ]

    def to_representation(self, run):
        data = super().to_representation(run)
        if self.context.get("brief"):
            # The image list can be long: list views carry the pool counts only.
            data["data_summary"] = {k: v for k, v in (run.data_summary or {}).items() if k != "images"}
        return data


class ModelVersionSerializer(serializers.ModelSerializer):
    locked_validation = serializers.SerializerMethodField()
    decision = serializers.SerializerMethodField()
    training_data = serializers.SerializerMethodField()
    plots = serializers.SerializerMethodField()
    trained_by_run = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "status",
            "threshold",
            "note",
            "created",
            "promoted_at",
            "locked_validation",
            "decision",
            "training_data",
            "plots",
            "trained_by_run",
        ]

    def _locked(self, version) -> dict:
        return (version.metrics or {}).get("locked_validation") or {}

    def get_locked_validation(self, version) -> dict:
        """AUC (95% CI by patient bootstrap), sensitivity/specificity/confusion at the threshold, ECE."""
        return {k: v for k, v in self._locked(version).items() if k not in ("scores", "plots")}

    def get_decision(self, version) -> dict | None:
        return (version.metrics or {}).get("decision")

    def get_training_data(self, version) -> dict:
        return (version.metrics or {}).get("training_data") or {}

    def get_plots(self, version) -> dict:
        request = self.context.get("request")
        return {
            kind: request.build_absolute_uri(reverse("model-plot", args=[version.pk, kind]))
            if request
            else reverse("model-plot", args=[version.pk, kind])
            for kind in (self._locked(version).get("plots") or {})
        }

    def get_trained_by_run(self, version) -> int | None:
        runs = list(version.training_runs.all())
        return runs[0].pk if runs else None


class ThresholdSerializer(serializers.Serializer):
    threshold = serializers.FloatField(min_value=0.0, max_value=1.0)


class PromoteSerializer(serializers.Serializer):
    repredict = serializers.BooleanField(default=False, help_text="also re-predict every unread study")


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every model version with its status and locked-validation metrics."""

    serializer_class = ModelVersionSerializer
    permission_classes = [IsPortalAdmin]

    def get_queryset(self):
        return registry.registry_versions()

    @extend_schema(
        request=ThresholdSerializer,
        responses={
            200: inline_serializer(
                "TradeOff", {"version": ModelVersionSerializer(), "trade_off": serializers.DictField()}
            )
        },
    )
    @action(detail=True, methods=["post", "get"], url_path="operating-point")
    def operating_point(self, request, pk=None):
        """GET ?threshold=: the trade-off there (no change). POST: move the operating point."""
        version = self.get_object()
        if request.method == "GET":
            threshold = request.query_params.get("threshold")
            form = ThresholdSerializer(data={"threshold": threshold if threshold is not None else version.threshold})
            form.is_valid(raise_exception=True)
            return Response(
                {
                    "version": self.get_serializer(version).data,
                    "trade_off": registry.trade_off(version, form.validated_data["threshold"]),
                }
            )
        form = ThresholdSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        version = promotion.set_operating_point(
            version=version,
            threshold=form.validated_data["threshold"],
            user=request.user,
            ip_address=client_ip(request),
        )
        return Response({"version": self.get_serializer(version).data, "trade_off": registry.trade_off(version)})

    @extend_schema(request=PromoteSerializer, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Make this version the champion by hand; the current champion retires."""
        form = PromoteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        version = promotion.promote(
            version=self.get_object(),
            user=request.user,
            ip_address=client_ip(request),
            repredict=form.validated_data["repredict"],
        )
        return Response(self.get_serializer(version).data)

    @extend_schema(request=PromoteSerializer, responses=ModelVersionSerializer)
    @action(detail=False, methods=["post"])
    def rollback(self, request):
        """The previous champion serves again; the current one retires."""
        form = PromoteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        version = promotion.rollback(
            user=request.user, ip_address=client_ip(request), repredict=form.validated_data["repredict"]
        )
        return Response(self.get_serializer(version).data)


class ExternalModelSerializer(serializers.Serializer):
    manifest = serializers.FileField(help_text="The manifest (JSON): format, file, input, outputs (see ml.external).")
    model = serializers.FileField(help_text="The ONNX model or TorchScript archive the manifest describes.")
    name = serializers.CharField(required=False, allow_blank=True, max_length=80)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500)


class ExternalModelViewSet(viewsets.GenericViewSet):
    """POST an ONNX or TorchScript model with its manifest: a run checks it (loadable, output shapes, finite
    outputs, within the inference budget), registers it and challenges the champion on the locked validation
    women; GET /api/v1/training-runs/<id>/ follows it."""

    permission_classes = [IsPortalAdmin]
    parser_classes = [MultiPartParser]
    serializer_class = ExternalModelSerializer

    @extend_schema(request=ExternalModelSerializer, responses={202: TrainingRunSerializer})
    def create(self, request):
        form = ExternalModelSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        run = external_models.submit(
            manifest=data["manifest"],
            model=data["model"],
            name=data.get("name", ""),
            note=data.get("note", ""),
            user=request.user,
            ip_address=client_ip(request),
        )
        run.refresh_from_db()
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Training runs, newest first; POST starts one (409 while another is queued or running)."""

    serializer_class = TrainingRunSerializer
    permission_classes = [IsPortalAdmin]

    def get_queryset(self):
        return TrainingRun.objects.select_related("candidate").order_by("-created", "-id")

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "brief": self.action == "list"}

    @extend_schema(request=None, responses={202: TrainingRunSerializer})
    def create(self, request):
        run = training.trigger_run(trigger="api", user=request.user, ip_address=client_ip(request))
        run.refresh_from_db()
        return Response(self.get_serializer(run).data, status=status.HTTP_202_ACCEPTED)


class PredictionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Predictions by every model version, newest first; none of a case whose AI result the reading policy
    hides from this reader (404, whatever the id: predictions_visible_to)."""

    serializer_class = PredictionSerializer
    pagination_class = KeysetPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = PredictionFilter

    def get_queryset(self):
        return predictions_visible_to(self.request.user)

    @extend_schema(responses=PNG)
    @action(detail=True, methods=["get"])
    def heatmap(self, request, pk=None):
        """Where the evidence is: 8-bit PNG aligned with the image's rendition (255 = most suspicious)."""
        return stream_png(self.get_object().heatmap.name)
