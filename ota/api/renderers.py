from __future__ import annotations

import csv
import io
import json
from typing import Any

from rest_framework.renderers import BaseRenderer

AUDIT_COLUMNS = [
    "id",
    "created_at",
    "actor_label",
    "action",
    "vehicle_vin",
    "object_type",
    "object_id",
    "before",
    "after",
    "details",
    "previous_hash",
    "entry_hash",
]


class AuditCsvRenderer(BaseRenderer):
    """Audit rows as CSV; the JSON columns stay JSON text so nothing is lost."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "error" in data:
            writer.writerow(["error"])
            writer.writerow([json.dumps(data["error"])])
            return out.getvalue().encode()
        if isinstance(data, dict):
            # Not audit rows (the OPTIONS description of the endpoint): one JSON cell per key.
            writer.writerow(["name", "value"])
            for name, value in data.items():
                writer.writerow([name, value if isinstance(value, str) else json.dumps(value)])
            return out.getvalue().encode()
        writer.writerow(AUDIT_COLUMNS)
        for row in data or []:
            writer.writerow(
                [
                    json.dumps(row[c], sort_keys=True) if isinstance(row[c], dict) else row[c]
                    for c in AUDIT_COLUMNS
                ]
            )
        return out.getvalue().encode()
