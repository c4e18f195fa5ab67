from __future__ import annotations

app_name = "pqc-api"

urlpatterns: list = []
