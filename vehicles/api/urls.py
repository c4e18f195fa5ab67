from __future__ import annotations

from django.urls import path

from vehicles.api import tls, views

app_name = "vehicles-api"

urlpatterns = [
    path("reports/versions", views.VersionReportView.as_view(), name="version-report"),
    path("saved-filters", views.SavedFilterListView.as_view(), name="saved-filter-list"),
    path("saved-filters/<int:pk>", views.SavedFilterDetailView.as_view(), name="saved-filter"),
    path(
        "saved-filters/<int:pk>/vehicles",
        views.SavedFilterVehiclesView.as_view(),
        name="saved-filter-vehicles",
    ),
    path("vehicles", views.VehicleListView.as_view(), name="vehicle-list"),
    path("vehicles/register", views.VehicleRegisterView.as_view(), name="vehicle-register"),
    path("vehicles/<str:vin>", views.VehicleDetailView.as_view(), name="vehicle-detail"),
    path(
        "vehicles/<str:vin>/vci-snapshots",
        views.VciHistoryView.as_view(),
        name="vehicle-vci-snapshots",
    ),
    path(
        "vehicles/<str:vin>/software-history",
        views.SoftwareHistoryView.as_view(),
        name="vehicle-software-history",
    ),
    path(
        "tls/vehicles/<str:vin>/session/",
        tls.VehicleTlsSessionView.as_view(),
        name="tls-session",
    ),
]
