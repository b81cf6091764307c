from django.urls import path

from . import views

urlpatterns = [
    path("studies/<int:pk>/report/", views.study_report, name="study-report"),
]
