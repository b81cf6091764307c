from django.urls import path

from screening.research_export import api, views

urlpatterns = [
    path("research-exports/", views.exports, name="research-exports"),
    path("research-exports/projects/", views.new_project, name="research-project-new"),
    path("research-exports/new/", views.new_export, name="research-export-new"),
    path("research-exports/<int:pk>.json", views.status, name="research-export-status"),
    path("research-exports/<int:pk>/download/", views.download, name="research-export-download"),
    path("api/v1/research-projects/", api.ProjectList.as_view(), name="api-research-projects"),
    path("api/v1/research-exports/", api.ExportList.as_view(), name="api-research-exports"),
    path("api/v1/research-exports/<int:pk>/", api.ExportDetail.as_view(), name="api-research-export"),
    path(
        "api/v1/research-exports/<int:pk>/download/",
        api.ExportDownload.as_view(),
        name="api-research-export-download",
    ),
]
