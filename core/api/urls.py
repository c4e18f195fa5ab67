from __future__ import annotations

app_name = "core-api"

urlpatterns: list = []
