from __future__ import annotations

from django.urls import path

from uptane.api import views

app_name = "uptane-api"

urlpatterns = [
    path("uptane/image/online-keys", views.OnlineKeysView.as_view(), name="online-keys"),
    path("uptane/image/targets-draft", views.TargetsDraftView.as_view(), name="targets-draft"),
    path(
        "uptane/image/upload/<str:role>",
        views.MetadataUploadView.as_view(),
        name="metadata-upload",
    ),
    path("uptane/image/<str:name>.json", views.ImageMetadataView.as_view(), name="image-metadata"),
    path(
        "uptane/director/<str:name>.json",
        views.DirectorMetadataView.as_view(),
        name="director-metadata",
    ),
]
