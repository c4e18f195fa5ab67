from __future__ import annotations

from django.urls import path

from pqc.api.views import TlsWhoAmIView

app_name = "pqc-api"

urlpatterns = [
    path("tls/whoami/", TlsWhoAmIView.as_view(), name="tls-whoami"),
]
