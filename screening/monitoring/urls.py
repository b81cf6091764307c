from django.urls import path

from screening.monitoring import api, views

urlpatterns = [
    path("monitoring/", views.monitoring, name="monitoring"),
    path("monitoring/models/<int:pk>/run/", views.run_now, name="monitoring-run"),
    path("monitoring/alerts/<int:pk>/acknowledge/", views.acknowledge, name="monitoring-acknowledge"),
    path("api/v1/monitoring/models/<int:pk>/", api.MonitoringDetail.as_view(), name="api-monitoring"),
    path("api/v1/monitoring/models/<int:pk>/runs/", api.MonitoringRunCreate.as_view(), name="api-monitoring-run"),
    path("api/v1/monitoring/alerts/", api.AlertList.as_view(), name="api-monitoring-alerts"),
    path(
        "api/v1/monitoring/alerts/<int:pk>/acknowledge/",
        api.AlertAcknowledge.as_view(),
        name="api-monitoring-acknowledge",
    ),
]
