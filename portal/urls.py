from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from portal import views
from screening.accounts.views import PortalLoginView, PortalLogoutView

urlpatterns = [
    path("accounts/login/", PortalLoginView.as_view(), name="login"),
    path("accounts/logout/", PortalLogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("screening.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up code as a script file, so the
    # Content-Security-Policy needs no inline-script exception for the docs.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api_docs.html"),
        name="api-docs",
    ),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("screening.exchange.web")),  # DICOMweb: /dicomweb/...
    path("", include("screening.urls")),
]

handler403 = "portal.views.permission_denied"
handler404 = "portal.views.page_not_found"
handler500 = "portal.views.server_error"
