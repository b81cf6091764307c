from rest_framework.routers import DefaultRouter

from .views import ImageViewSet, PredictionViewSet, StudyViewSet

router = DefaultRouter()
router.register("images", ImageViewSet, basename="api-image")
router.register("studies", StudyViewSet, basename="api-study")
router.register("predictions", PredictionViewSet, basename="api-prediction")

urlpatterns = router.urls
