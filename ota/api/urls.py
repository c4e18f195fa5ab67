from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from ota.api import package_download, update_log, vci, views

app_name = "ota-api"

router = DefaultRouter(trailing_slash=False)
router.include_root_view = False
router.register("campaigns", views.CampaignViewSet, basename="campaign")

urlpatterns = [
    path("ota/check", views.UpdateCheckView.as_view(), name="ota-check"),
    path("ota/package", views.PackageRequestView.as_view(), name="ota-package-request"),
    path(
        "ota/package/<str:package_id>",
        package_download.PackageDownloadView.as_view(),
        name="package-download",
    ),
    path("ota/status", views.StatusReportView.as_view(), name="ota-status"),
    path("vehicles/<str:vin>/vci", vci.VciView.as_view(), name="vehicle-vci"),
    path("vehicles/<str:vin>/updates", views.VehicleUpdatesView.as_view(), name="vehicle-updates"),
    path(
        "vehicles/<str:vin>/update-log",
        update_log.VehicleUpdateLogView.as_view(),
        name="vehicle-update-log",
    ),
    path("audit-events", views.AuditEventListView.as_view(), name="audit-event-list"),
    path("audit-events/export", views.AuditExportView.as_view(), name="audit-event-export"),
    *router.urls,
]
