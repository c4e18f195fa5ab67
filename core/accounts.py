"""The administrator account that setup scripts make sure of."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from core.audit import record_event
from core.roles import Role


@transaction.atomic
def ensure_administrator(
    *, username: str, password: str, password_source: str, actor: Any, os_user: str = ""
) -> tuple[Any, bool]:
    """Create `username` as a superuser in every role group, or give it `password`, and audit
    it; returns the user and whether it was created. The password never enters the trail.
    A password Django's validators refuse raises ValidationError and changes nothing."""
    users = get_user_model()
    user = users.objects.select_for_update().filter(username=username).first()
    created = user is None
    if created:
        user = users(username=username)
    # The same validators as the admin's password forms (AUTH_PASSWORD_VALIDATORS); raises
    # ValidationError before anything is written.
    validate_password(password, user)
    before = {} if created else {"is_staff": user.is_staff, "is_superuser": user.is_superuser}
    user.is_staff = True
    user.is_superuser = True
    user.set_password(password)
    user.save()
    user.groups.set(Group.objects.filter(name__in=[role.value for role in Role]))
    record_event(
        action="user.created" if created else "user.password_set",
        actor=actor,
        object_type="user",
        object_id=user.pk,
        before=before,
        after={"is_staff": True, "is_superuser": True},
        details={
            "username": username,
            "groups": sorted(user.groups.values_list("name", flat=True)),
            "password_source": password_source,
            "os_user": os_user,
        },
    )
    return user, created
