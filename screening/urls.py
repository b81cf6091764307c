from django.urls import include, path

from screening import views

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("upload/", views.upload, name="upload"),
    path("studies/<int:pk>/", views.study_viewer, name="study-viewer"),
    path("studies/<int:pk>/viewer-data/", views.study_viewer_data, name="study-viewer-data"),
    path("studies/<int:pk>/audit/", views.study_audit, name="study-audit"),
    path("healthz", views.healthz, name="healthz"),
    path("", include("screening.ai.urls")),
    path("", include("screening.reading.urls")),
    path("", include("screening.intake.urls")),
    path("", include("screening.monitoring.urls")),
    path("", include("screening.research_export.urls")),
]
