from __future__ import annotations

from django.urls import path

from vehicles.api import ecus as views

# The ECU routes keep their own namespace (ecus-api:ecu-list, ...).
app_name = "ecus-api"

urlpatterns = [
    path("ecus", views.EcuListView.as_view(), name="ecu-list"),
    path("ecus/<str:ecu_id>", views.EcuDetailView.as_view(), name="ecu-detail"),
    path("ecus/<str:ecu_id>/version", views.EcuVersionView.as_view(), name="ecu-version"),
]
