from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from firmware.api import views

app_name = "firmware-api"

router = DefaultRouter(trailing_slash=False)
router.include_root_view = False
router.register("firmware", views.FirmwareViewSet, basename="firmware")

urlpatterns = [
    path("firmware/upload", views.FirmwareUploadView.as_view(), name="firmware-upload"),
    *router.urls,
]
