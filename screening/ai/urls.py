from django.urls import path

from screening.ai import views as views_models

urlpatterns = [
    path("models/", views_models.registry, name="models"),
    path("models/train/", views_models.train_now, name="models-train"),
    path("models/rollback/", views_models.rollback, name="models-rollback"),
    path("models/external/", views_models.register_external, name="models-external"),
    path("models/runs/<int:pk>.json", views_models.run_status, name="training-run-status"),
    path("models/<int:pk>/promote/", views_models.promote, name="model-promote"),
    path("models/<int:pk>/operating-point/", views_models.operating_point, name="model-operating-point"),
    path("models/<int:pk>/plots/<slug:kind>.png", views_models.plot, name="model-plot"),
]
