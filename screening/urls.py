"""The pages of every sub-domain, each from its own package's `urls.py`."""

from django.urls import include, path

from portal.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", include("screening.reading.urls")),
    path("", include("screening.intake.urls")),
    path("", include("screening.audit.urls")),
    path("", include("screening.ai.urls")),
    path("", include("screening.exchange.urls")),
    path("", include("screening.monitoring.urls")),
    path("", include("screening.research_export.urls")),
    path("", include("screening.reports.urls")),
]
