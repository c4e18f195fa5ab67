from __future__ import annotations

from django.db import migrations, models


def seed_head(apps, schema_editor):
    """Start the head at the newest existing event, so the chain continues where it stood."""
    AuditEvent = apps.get_model("core", "AuditEvent")
    AuditChainHead = apps.get_model("core", "AuditChainHead")
    last = AuditEvent.objects.order_by("-id").first()
    AuditChainHead.objects.create(
        pk=1,
        last_hash=last.entry_hash if last else "",
        last_event_id=last.pk if last else None,
        event_count=AuditEvent.objects.count(),
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0003_audit_append_only_trigger")]

    operations = [
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("last_hash", models.CharField(blank=True, max_length=64)),
                ("last_event_id", models.BigIntegerField(blank=True, null=True)),
                ("event_count", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(seed_head, migrations.RunPython.noop),
    ]
