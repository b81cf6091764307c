from django.urls import path
from rest_framework.routers import DefaultRouter

from screening.accounts.api import TokenView
from screening.ai.api import ExternalModelViewSet, ModelVersionViewSet, PredictionViewSet, TrainingRunViewSet
from screening.intake.api import ImageViewSet, PatientViewSet, StudyViewSet
from screening.reading import api as reading_api
from screening.reading.api import WorklistViewSet

router = DefaultRouter()
router.register("images", ImageViewSet, basename="api-image")
router.register("studies", StudyViewSet, basename="api-study")
router.register("predictions", PredictionViewSet, basename="api-prediction")
router.register("patients", PatientViewSet, basename="api-patient")
router.register("worklist", WorklistViewSet, basename="api-worklist")
router.register("models/external", ExternalModelViewSet, basename="api-external-model")
router.register("models", ModelVersionViewSet, basename="api-model")
router.register("training-runs", TrainingRunViewSet, basename="api-training-run")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    *router.urls,
    *reading_api.urlpatterns,
]
