"""Operator roles, kept as Django groups so the admin can assign them."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    FLEET_ENGINEER = "fleet_engineer", "Fleet engineer"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


# A role includes the rights of the roles after it: an operator may also view.
ROLE_IMPLIES: dict[str, set[str]] = {
    Role.FLEET_ENGINEER: {Role.FLEET_ENGINEER, Role.VIEWER},
    Role.OPERATOR: {Role.OPERATOR, Role.VIEWER},
    Role.VIEWER: {Role.VIEWER},
}


def user_roles(user: object) -> set[str]:
    """The effective roles of a user; superusers hold every role."""
    if not getattr(user, "is_authenticated", False):
        return set()
    if getattr(user, "is_superuser", False):
        return {role.value for role in Role}
    cached = getattr(user, "_ota_roles", None)
    if cached is None:
        cached = set()
        for name in user.groups.values_list("name", flat=True):  # type: ignore[attr-defined]
            cached |= ROLE_IMPLIES.get(name, set())
        user._ota_roles = cached  # type: ignore[attr-defined]
    return cached


def has_role(user: object, role: str) -> bool:
    return role in user_roles(user)
