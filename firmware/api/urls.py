from __future__ import annotations

app_name = "firmware-api"

urlpatterns: list = []
