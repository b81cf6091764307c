from django.urls import path

from screening.ai import views

urlpatterns = [
    path("models/", views.registry, name="models"),
    path("models/train/", views.train_now, name="models-train"),
    path("models/rollback/", views.rollback, name="models-rollback"),
    path("models/external/", views.register_external, name="models-external"),
    path("models/runs/<int:pk>.json", views.run_status, name="training-run-status"),
    path("models/<int:pk>/promote/", views.promote, name="model-promote"),
    path("models/<int:pk>/operating-point/", views.operating_point, name="model-operating-point"),
    path("models/<int:pk>/plots/<slug:kind>.png", views.plot, name="model-plot"),
]
