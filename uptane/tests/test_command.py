from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from uptane.models import OnlineKey, SignedMetadata


def test_init_creates_each_online_role_a_hybrid_pair_once(db) -> None:
    out = StringIO()
    call_command("uptane", "init", stdout=out)
    assert "created 12 online keys" in out.getvalue()
    call_command("uptane", "init", stdout=StringIO())
    assert OnlineKey.objects.count() == 12
    assert SignedMetadata.objects.filter(repository="director", role="root").count() == 1
    assert AuditEvent.objects.filter(action="uptane.online_keys_created").count() == 1


def test_rotating_a_director_key_publishes_the_next_root(db) -> None:
    call_command("uptane", "init", stdout=StringIO())
    call_command("uptane", "rotate-director-key", "timestamp", stdout=StringIO())
    assert OnlineKey.objects.filter(role="timestamp", revoked_at__isnull=False).count() == 2
    assert SignedMetadata.objects.filter(repository="director", role="root").count() == 2
    with pytest.raises(CommandError, match="not a director role"):
        call_command("uptane", "rotate-director-key", "bogus", stdout=StringIO())


def test_roots_are_exported_for_provisioning(db, tmp_path) -> None:
    call_command("uptane", "init", stdout=StringIO())
    with pytest.raises(CommandError, match="no root yet"):
        call_command("uptane", "roots", "--out", str(tmp_path), stdout=StringIO())
    with pytest.raises(CommandError, match="--out"):
        call_command("uptane", "roots", stdout=StringIO())
