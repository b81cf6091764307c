from django.urls import path

from screening.reading import views as views_reading

urlpatterns = [
    path("reading/", views_reading.my_reading, name="reading"),
    path("reading/arbitration/", views_reading.arbitration, name="reading-arbitration"),
    path("reading/policy/", views_reading.policy, name="reading-policy"),
    path("reading/assign/", views_reading.assign, name="reading-assign"),
    path("reading/studies/<int:pk>/release/", views_reading.release_lock, name="reading-release"),
    path("outcomes/", views_reading.outcome_list, name="outcomes"),
    path("performance/", views_reading.performance_page, name="performance"),
]
