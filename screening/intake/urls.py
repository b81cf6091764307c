from django.urls import path

from screening.intake import views

urlpatterns = [
    path("upload/", views.upload, name="upload"),
    path("filing/reconciliation/", views.reconciliation, name="filing-reconciliation"),
    path("filing/reconciliation/<int:pk>/", views.reconcile, name="filing-reconcile"),
    path("filing/images/<int:pk>/", views.refile_image, name="filing-image"),
    path("filing/studies/<int:pk>/", views.refile_study, name="filing-study"),
]
