from __future__ import annotations

app_name = "diagnostics-api"

urlpatterns: list = []
