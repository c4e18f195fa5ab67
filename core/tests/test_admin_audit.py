"""Every admin path either changes nothing or leaves an audit event naming the operator.

The walk posts, as a browser would, every registered ModelAdmin's add form, change form (with
a change to each editable field), each action and the delete confirmation, and compares a
snapshot of the whole database before and after each request.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from core.audit import check_chain
from core.models import AuditChainHead, AuditEvent
from core.tests.admin_forms import submitted_form
from firmware.tests import factories
from ota import campaigns
from ota.models import Campaign

# Bookkeeping that records the walk itself rather than domain state.
UNWATCHED = {"core.auditevent", "core.auditchainhead", "admin.logentry", "sessions.session"}
WALK_PASSWORD = "Walk-pass-7391!"
_serial = itertools.count(1)


def _changed_text(value: str, max_length: int | None) -> str:
    suffix = "w" if not value.endswith("w") else "v"
    if max_length and len(value) >= max_length:
        return value[: max_length - 1] + suffix
    return value + suffix


def _changed_json(value: str) -> str:
    try:
        document = json.loads(value or "null")
    except json.JSONDecodeError:
        return value
    if (
        isinstance(document, list)
        and document
        and all(isinstance(item, (int, float)) for item in document)
    ):
        return json.dumps([100.0] if document != [100.0] else [50.0, 100.0])
    return value


def _with_changes(data: dict[str, list[str]], form: Any) -> dict[str, list[str]]:
    """The submitted form with each filled-in field of the main form changed, as an operator
    would: text edited, numbers stepped, flags flipped, another choice, other wave sizes."""
    changed = dict(data)
    for name, field in form.fields.items():
        if name not in data and not hasattr(field, "choices"):
            continue
        current = (data.get(name) or [""])[0]
        kind = type(field).__name__
        if kind == "BooleanField":
            changed[name] = [] if data.get(name) else ["on"]
        elif kind == "IntegerField" and current:
            try:
                changed[name] = [str(int(float(current or 0)) + 1)]
            except ValueError:
                raise AssertionError(f"{name}={current!r} is not a number") from None
        elif kind in ("TypedChoiceField", "ChoiceField") and field.choices:
            values = [str(value) for value, _ in field.choices if str(value) not in ("", current)]
            if values:
                changed[name] = [values[0]]
        elif kind == "JSONField":
            changed[name] = [_changed_json(current)]
        elif kind in ("CharField", "SlugField", "EmailField") and current:
            if kind == "EmailField":
                changed[name] = [f"walk{next(_serial)}@example.com"]
            else:
                changed[name] = [_changed_text(current, getattr(field, "max_length", None))]
    return changed


def _with_required_filled(data: dict[str, list[str]], form: Any) -> dict[str, list[str]]:
    filled = dict(data)
    for name, field in form.fields.items():
        if (data.get(name) or [""])[0]:
            continue
        if "password" in name:
            filled[name] = [WALK_PASSWORD]
        elif type(field).__name__ in ("CharField", "SlugField", "RegexField"):
            filled[name] = [f"walk-{next(_serial)}"]
        elif type(field).__name__ == "ModelChoiceField":
            first = field.queryset.order_by("pk").first()
            if first is not None:
                filled[name] = [str(first.pk)]
    return filled


def _snapshot() -> dict[str, list[tuple[Any, ...]]]:
    state = {}
    for model in apps.get_models():
        if model._meta.label_lower in UNWATCHED or model._meta.proxy:
            continue
        names = [field.attname for field in model._meta.concrete_fields]
        state[model._meta.label_lower] = list(
            model._base_manager.order_by("pk").values_list(*names)
        )
        for field in model._meta.many_to_many:
            through = field.remote_field.through
            state[f"{model._meta.label_lower}.{field.name}"] = sorted(
                through.objects.values_list(*[f.attname for f in through._meta.concrete_fields])
            )
    return state


def _placeholder(field: models.Field, serial: int) -> Any:
    """A value of `field`'s type for a row made only so the walk has something to open."""
    if field.is_relation:
        return field.related_model._default_manager.order_by("pk").first()
    if field.choices:
        return field.choices[0][0]
    kind = field.get_internal_type()
    if kind in ("DateTimeField",):
        return timezone.now()
    if kind == "DateField":
        return dt.date(2026, 1, 1)
    if kind == "JSONField":
        return {}
    if "Integer" in kind or kind in ("FloatField", "DecimalField"):
        return serial
    if kind == "BinaryField":
        return b""
    return f"walk-{serial}"[: field.max_length or 64]


def _ensure_one_row(model: type[models.Model]) -> None:
    if model._default_manager.exists():
        return
    if model._meta.label_lower == "knox.authtoken":
        # knox's manager makes the digest and returns the plain token with the row.
        model._default_manager.create(user=User.objects.order_by("pk").first(), expiry=None)
        return
    for field in model._meta.concrete_fields:
        if field.is_relation and not field.null and field.related_model is not model:
            _ensure_one_row(field.related_model)
    serial = next(_serial)
    values = {
        field.name: _placeholder(field, serial)
        for field in model._meta.concrete_fields
        if not (field.null or field.blank or field.has_default())
        and not isinstance(field, models.AutoField)
        and not getattr(field, "auto_now_add", False)
    }
    model._default_manager.create(**values)


@pytest.fixture
def every_model(vehicle, fleet_operator, admin_user) -> None:
    """A row of every registered model; a draft and a started campaign through the services."""
    release = factories.firmware(code="ECM", version="2.0.0")
    campaigns.create_campaign(operator=fleet_operator, name="draft", firmware_ids=[release.pk])
    started = campaigns.create_campaign(
        operator=fleet_operator, name="started", firmware_ids=[release.pk]
    )
    campaigns.start_campaign(started, operator=fleet_operator)
    for model in admin.site._registry:
        _ensure_one_row(model)


def _objects_to_walk(model: type[models.Model]) -> list[models.Model]:
    if model is Campaign:
        return list(Campaign.objects.order_by("pk"))
    return list(model._default_manager.order_by("pk")[:1])


class _Walk:
    def __init__(self, client: Client, user: User) -> None:
        self.client = client
        self.user = user
        self.operator = f"user:{user.username}"
        self.findings: list[str] = []

    def step(self, what: str, request: Any) -> Any:
        before, events_before = _snapshot(), AuditEvent.objects.count()
        response = request()
        after = _snapshot()
        if response.status_code >= 500:
            self.findings.append(f"{what}: server error {response.status_code}")
        if after == before:
            return response
        new_events = AuditEvent.objects.order_by("id")[events_before:]
        if not new_events:
            changed = sorted(name for name in after if after[name] != before.get(name))
            self.findings.append(f"{what}: changed {changed} without an audit event")
        for event in new_events:
            if event.actor_label != self.operator:
                self.findings.append(f"{what}: {event.action} recorded as {event.actor_label}")
        return response


def _walk_add(walk: _Walk, model: type[models.Model], model_admin: admin.ModelAdmin) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_add")
    page = walk.client.get(url)
    if page.status_code != 200 or page.context is None or "adminform" not in page.context:
        return
    data = _with_required_filled(submitted_form(page, model), page.context["adminform"].form)
    walk.step(f"add {model._meta.label}", lambda: walk.client.post(url, {**data, "_save": "1"}))


def _walk_change(walk: _Walk, model: type[models.Model], obj: models.Model) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk])
    page = walk.client.get(url)
    if page.status_code != 200 or "adminform" not in (page.context or {}):
        walk.step(f"change {model._meta.label} {obj.pk}", lambda: walk.client.post(url, {}))
        return
    data = _with_changes(submitted_form(page, model), page.context["adminform"].form)
    walk.step(
        f"change {model._meta.label} {obj.pk}",
        lambda: walk.client.post(url, {**data, "_save": "1"}),
    )


def _walk_actions(
    walk: _Walk, model: type[models.Model], model_admin: admin.ModelAdmin, obj: models.Model
) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    request = RequestFactory().get(url)
    request.user = walk.user
    for name in model_admin.get_actions(request):
        selected = {"action": name, "_selected_action": [obj.pk], "post": "yes"}
        walk.step(
            f"action {name} on {model._meta.label} {obj.pk}",
            lambda s=selected: walk.client.post(url, s),
        )


def _walk_delete(walk: _Walk, model: type[models.Model], obj: models.Model) -> None:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_delete", args=[obj.pk])
    walk.step(
        f"delete {model._meta.label} {obj.pk}", lambda: walk.client.post(url, {"post": "yes"})
    )


def test_every_admin_path_changes_nothing_or_is_audited(every_model, admin_user) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    walk = _Walk(client, admin_user)
    walked = 0
    for model, model_admin in admin.site._registry.items():
        # An unaudited delete earlier in the walk may have removed it (a finding of its own).
        _ensure_one_row(model)
        objects = _objects_to_walk(model)
        _walk_add(walk, model, model_admin)
        for obj in objects:
            _walk_change(walk, model, obj)
            _walk_actions(walk, model, model_admin, obj)
            _walk_delete(walk, model, obj)
            walked += 1
    assert walked >= len(admin.site._registry)
    assert walk.findings == [], "\n".join(walk.findings)
    # The walk really changed what the admin may change, and the trail says so.
    by_admin = set(
        AuditEvent.objects.filter(actor_label=walk.operator).values_list("action", flat=True)
    )
    assert {
        "campaign.updated",
        "campaign.started",
        "firmware.deprecated",
        "user.changed",
        "group.created",
        "group.changed",
        "group.deleted",
    } <= by_admin, sorted(by_admin)
    assert check_chain().intact
    assert AuditChainHead.objects.get().last_event_id == AuditEvent.objects.last().pk


def test_accounts_made_and_changed_in_the_admin_are_audited(admin_user, fleet_operator) -> None:
    client = Client()
    client.force_login(admin_user)
    page = client.get(reverse("admin:auth_user_add"))
    data = submitted_form(page, User) | {
        "username": ["nina"],
        "password1": [WALK_PASSWORD],
        "password2": [WALK_PASSWORD],
        "_save": ["1"],
    }
    assert client.post(reverse("admin:auth_user_add"), data).status_code == 302
    nina = User.objects.get(username="nina")
    password_url = reverse("admin:auth_user_password_change", args=[fleet_operator.pk])
    changed = client.post(
        password_url, {"password1": WALK_PASSWORD + "2", "password2": WALK_PASSWORD + "2"}
    )
    assert changed.status_code == 302

    events = AuditEvent.objects.filter(object_type="user").order_by("id")
    assert [(e.action, e.object_id, e.actor_label) for e in events] == [
        ("user.created", str(nina.pk), "user:ada"),
        ("user.changed", str(fleet_operator.pk), "user:ada"),
    ]
    assert "pbkdf2" not in str(events[1].details) and "md5" not in str(events[1].details)
