from django.urls import path

from screening.intake import views as views_filing

urlpatterns = [
    path("filing/reconciliation/", views_filing.reconciliation, name="filing-reconciliation"),
    path("filing/reconciliation/<int:pk>/", views_filing.reconcile, name="filing-reconcile"),
    path("filing/images/<int:pk>/", views_filing.refile_image, name="filing-image"),
    path("filing/studies/<int:pk>/", views_filing.refile_study, name="filing-study"),
]
