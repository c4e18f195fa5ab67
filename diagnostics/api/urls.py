from __future__ import annotations

from django.urls import path

from diagnostics.api import views

app_name = "diagnostics-api"

urlpatterns = [
    path("diagnostics/send", views.DiagnosticSendView.as_view(), name="send"),
    path(
        "diagnostics/results/<uuid:request_id>",
        views.DiagnosticResultView.as_view(),
        name="results",
    ),
    path("diagnostics/control", views.ControlSendView.as_view(), name="control-send"),
    path(
        "diagnostics/control/<uuid:batch_id>",
        views.ControlBatchView.as_view(),
        name="control-batch",
    ),
    path("diagnostics/telemetry/<str:vin>", views.TelemetryView.as_view(), name="telemetry"),
    path("diagnostics/inbound-drops", views.InboundDropView.as_view(), name="inbound-drops"),
]
