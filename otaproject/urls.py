"""Every route, and the share of them each listener serves.

ROOT_URLCONF (this module) holds them all, for the OpenAPI schema, tests and any other server.
The PQC-TLS listeners route each request with their own URLconf (see otaproject/asgi.py):
the vehicle listener serves the vehicle API and package downloads, the console listener the
console, dashboard, admin, operator API and API docs; both serve the API endpoints a vehicle
and an operator may each read.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core import auth_api
from diagnostics.api import urls as diagnostics_api_urls
from firmware.api import urls as firmware_api_urls
from ota.api import urls as ota_api_urls
from otaproject.metrics import metrics_view
from pqc.api import urls as pqc_api_urls
from uptane.api import urls as uptane_api_urls
from vehicles.api import ecu_urls as ecus_api_urls
from vehicles.api import urls as vehicles_api_urls
from webhooks.api import urls as webhooks_api_urls

API_MODULES = [
    vehicles_api_urls,
    ecus_api_urls,
    firmware_api_urls,
    ota_api_urls,
    diagnostics_api_urls,
    pqc_api_urls,
    uptane_api_urls,
    webhooks_api_urls,
    auth_api,
]

# Only vehicles call these (IsVehicle): served on the vehicle listener alone.
VEHICLE_ONLY_ROUTES = {
    "ota-api:vehicle-vci",
    "ecus-api:ecu-version",
    "ota-api:package-download",
    "ota-api:ota-check",
    "ota-api:ota-package-request",
    "ota-api:ota-status",
    "pqc-api:tls-whoami",
    "vehicles-api:tls-session",
    "uptane-api:director-metadata",
}
# A vehicle reads its own record here, an operator any: served on both listeners.
SHARED_ROUTES = {
    "vehicles-api:vehicle-register",
    "vehicles-api:vehicle-detail",
    "vehicles-api:vehicle-vci-snapshots",
    "vehicles-api:vehicle-software-history",
    "ecus-api:ecu-list",
    "ecus-api:ecu-detail",
    "ota-api:vehicle-updates",
    "uptane-api:image-metadata",
}


def _api(keep: Any = None) -> list[Any]:
    """The /api/v1/ routes whose namespaced name `keep` accepts (all when None)."""
    routes = []
    for module in API_MODULES:
        patterns = [
            pattern
            for pattern in module.urlpatterns
            if keep is None or keep(f"{module.app_name}:{pattern.name}")
        ]
        routes.append(path("", include((patterns, module.app_name))))
    return routes


def _for_vehicles(name: str) -> bool:
    return name in VEHICLE_ONLY_ROUTES or name in SHARED_ROUTES


def _for_operators(name: str) -> bool:
    return name not in VEHICLE_ONLY_ROUTES


_console_pages = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("metrics", metrics_view, name="metrics"),
    path("", include("core.urls")),
    path("", include("console.urls")),
]

urlpatterns = [path("api/v1/", include(_api())), *_console_pages]
vehicle_urlpatterns = [path("api/v1/", include(_api(_for_vehicles)))]
console_urlpatterns = [path("api/v1/", include(_api(_for_operators))), *_console_pages]


def api_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 in the API's JSON error shape (all the vehicle listener ever answers with)."""
    body = {"error": {"code": "not_found", "message": "no such endpoint", "fields": {}}}
    return JsonResponse(body, status=404)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 in the API's JSON error shape under /api/, the console's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in the API's JSON error shape under /api/ (a script parses it), HTML elsewhere."""
    if request.path.startswith("/api/"):
        body = {"error": {"code": "server_error", "message": "internal error", "fields": {}}}
        return JsonResponse(body, status=500)
    return defaults.server_error(request)


handler404 = not_found
handler500 = server_error
