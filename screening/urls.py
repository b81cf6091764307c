from django.urls import path

from . import views

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("upload/", views.upload, name="upload"),
    path("healthz", views.healthz, name="healthz"),
]
