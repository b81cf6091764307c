from django.urls import path

from screening.reading import views

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("studies/<int:pk>/", views.study_viewer, name="study-viewer"),
    path("studies/<int:pk>/viewer-data/", views.study_viewer_data, name="study-viewer-data"),
    path("reading/", views.my_reading, name="reading"),
    path("reading/arbitration/", views.arbitration, name="reading-arbitration"),
    path("reading/policy/", views.policy, name="reading-policy"),
    path("reading/assign/", views.assign, name="reading-assign"),
    path("reading/preferences/", views.reader_preferences, name="reading-preferences"),
    path("reading/studies/<int:pk>/release/", views.release_lock, name="reading-release"),
    path("outcomes/", views.outcome_list, name="outcomes"),
    path("performance/", views.performance_page, name="performance"),
]
