from django.urls import path

from screening.reports import views

urlpatterns = [
    path("studies/<int:pk>/report/", views.study_report, name="study-report"),
]
