"""A covering index for fleet-wide version queries on PostgreSQL.

The fleet list's version filter (`?ecu=ECM&version=<2.0.0`) and the version report read, for
one ECU type and a version range, which vehicle runs which version. With the vehicle and the
version text in the index, PostgreSQL answers from the index alone instead of visiting one heap
page per ECU (an ECM is one row in a hundred of a vehicle's ECUs, so nearly every page). SQLite
has no INCLUDE; there the plain (type, version key) index serves.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEX = "ecus_ecu_type_version_cover"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON ecus_ecu "
            "(ecu_type_id, sw_version_key) INCLUDE (vehicle_id, sw_version)"
        )


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("ecus", "0002_softwarechange")]

    operations = [migrations.RunPython(create, drop)]
