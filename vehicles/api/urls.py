from __future__ import annotations

app_name = "vehicles-api"

urlpatterns: list = []
