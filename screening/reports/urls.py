from django.urls import path

from screening.reports import views

urlpatterns = [
    path("studies/<int:pk>/report/", views.study_report, name="study-report"),
    path("studies/<int:pk>/report.pdf", views.study_report_pdf, name="study-report-pdf"),
]
