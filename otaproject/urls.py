from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

api_v1 = [
    path("", include("vehicles.api.urls")),
    path("", include("ecus.api.urls")),
    path("", include("firmware.api.urls")),
    path("", include("ota.api.urls")),
    path("", include("diagnostics.api.urls")),
    path("", include("pqc.api.urls")),
    path("", include("core.auth_api")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("core.urls")),
]
