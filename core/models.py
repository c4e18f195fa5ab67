from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """An append-only record of an operator action or a vehicle outcome (UNECE R156 evidence).

    Each row carries the hash of the previous one, so a deleted or edited row breaks the chain
    that `core.audit.verify_chain()` checks; PostgreSQL also refuses UPDATE and DELETE by trigger.
    """

    # Set before saving (not auto_now_add) because the entry hash covers it.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="audit_events",
        null=True,
        blank=True,
    )
    # "user:<name>", "vehicle:<VIN>" or "system:<component>", kept as text so it survives renames.
    actor_label = models.CharField(max_length=120)
    action = models.CharField(max_length=64, db_index=True)
    vehicle_vin = models.CharField(max_length=17, blank=True, db_index=True)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True)
    previous_hash = models.CharField(max_length=64, blank=True)
    entry_hash = models.CharField(max_length=64, unique=True)
    # What the entry hash covers: 1, events written before it covered the time; 2, the time too.
    hash_version = models.PositiveSmallIntegerField(default=1)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="core_auditevent_object"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object):  # noqa: ANN201
        raise ValueError("audit events are append-only")


class AuditChainHead(models.Model):
    """The one row every audit writer locks: the hash and id of the newest event.

    Locking the newest AuditEvent is not enough on PostgreSQL: after waiting for the lock, a
    writer still reads the row it waited on, not the row the other writer inserted, and forks
    the chain. Updating this single row in each writer's transaction serialises them.
    """

    last_hash = models.CharField(max_length=64, blank=True)
    last_event_id = models.BigIntegerField(null=True, blank=True)
    event_count = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"audit chain head at event {self.last_event_id}"
