from __future__ import annotations

app_name = "ota-api"

urlpatterns: list = []
