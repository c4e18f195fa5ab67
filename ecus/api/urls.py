from __future__ import annotations

app_name = "ecus-api"

urlpatterns: list = []
