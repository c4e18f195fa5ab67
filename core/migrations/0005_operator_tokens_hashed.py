"""Operator API tokens move from DRF's plain-text table to hashed knox tokens."""

from django.db import migrations


def hash_plain_tokens(apps, schema_editor):
    from core.tokens import migrate_plain_tokens

    migrate_plain_tokens(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0004_audit_chain_head"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop, elidable=False),
    ]
