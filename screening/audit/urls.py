from django.urls import path

from screening.audit import views

urlpatterns = [
    path("studies/<int:pk>/audit/", views.study_audit, name="study-audit"),
]
