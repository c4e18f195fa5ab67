from __future__ import annotations

from django.urls import path

from console import views

app_name = "console"

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("campaigns/", views.campaigns, name="campaigns"),
    path("campaigns/new", views.campaign_create, name="campaign-create"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="campaign"),
    path("campaigns/<int:pk>/<slug:action>", views.campaign_action, name="campaign-action"),
    path("vehicles/", views.vehicles, name="vehicles"),
    path("vehicles/<str:vin>/", views.vehicle_detail, name="vehicle"),
    path("diagnostics/", views.diagnostics_console, name="diagnostics"),
    path("diagnostics/send", views.diagnostics_send, name="diagnostics-send"),
    path(
        "diagnostics/requests/<uuid:request_id>/",
        views.diagnostic_request_detail,
        name="diagnostic-request",
    ),
    path("pqc/", views.pqc, name="pqc"),
    path("reports/versions/", views.version_report, name="versions"),
]
