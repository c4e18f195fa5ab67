from __future__ import annotations

from django.urls import path

from firmware.api import views

app_name = "firmware-api"

urlpatterns = [
    path("firmware/upload", views.FirmwareUploadView.as_view(), name="firmware-upload"),
    path(
        "ota/package/<str:package_id>",
        views.PackageDownloadView.as_view(),
        name="package-download",
    ),
]
