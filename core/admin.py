from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin, AccessLogAdmin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from core.audit import record_event
from core.lockouts import clear_lockout
from core.models import AuditEvent


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """Shown, never changed here: the rows change only through their app's services."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedModelAdmin(admin.ModelAdmin):
    """For models with no service of their own (accounts, groups, credentials): every change the
    admin logs also goes into the audit trail, in the same request and by the same operator."""

    def _audit(self, request: HttpRequest, obj: Model, verb: str, change: Any) -> None:
        object_type = obj._meta.model_name
        record_event(
            action=f"{object_type}.{verb}",
            actor=request.user,
            object_type=object_type,
            object_id=obj.pk,
            details={"object": str(obj), "change": change, "via": "admin"},
        )

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Only deletion logs what it does; other bulk actions would change rows unaudited.
        return {
            name: action
            for name, action in super().get_actions(request).items()
            if action[0] is delete_selected
        }

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "created", message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._audit(request, obj, "changed", message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: QuerySet[Model] | list[Model]) -> Any:
        for obj in queryset:
            self._audit(request, obj, "deleted", "")
        return super().log_deletions(request, queryset)


# The admin's app list beside every page would leave a changelist with filters ~700 px at
# 1366 px; the index page and the breadcrumbs already lead to every model.
admin.site.enable_nav_sidebar = False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    # Short columns, so the trail fits a 1366 px screen beside its filters.
    list_display = ["when", "actor_label", "action", "vehicle_vin", "object"]
    list_filter = ["action", "object_type"]
    search_fields = ["vehicle_vin", "actor_label", "object_id"]
    show_full_result_count = False

    @admin.display(description="when", ordering="created_at")
    def when(self, obj: AuditEvent) -> str:
        return timezone.localtime(obj.created_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="object", ordering="object_type")
    def object(self, obj: AuditEvent) -> str:
        # Some ids are 64-digit digests: the list shows their start, the title all of it.
        object_id = str(obj.object_id)
        if len(object_id) <= 20:
            return f"{obj.object_type} {object_id}".strip()
        return format_html(
            '{} <span title="{}">{}…</span>', obj.object_type, object_id, object_id[:16]
        )


def _audit_registered(model_admin: admin.ModelAdmin) -> type[admin.ModelAdmin]:
    return type(type(model_admin).__name__, (AuditedModelAdmin, type(model_admin)), {})


# Accounts, role groups and credentials registered by Django and the apps installed before this
# one: the same admin pages, with their changes audited.
for _model, _model_admin in list(admin.site._registry.items()):
    if isinstance(_model_admin, AuditedModelAdmin):
        continue
    admin.site.unregister(_model)
    admin.site.register(_model, _audit_registered(_model_admin))


class LoginRecordAdmin(ReadOnlyModelAdmin):
    """django-axes' login records are evidence: shown, never edited or deleted here."""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # axes' own action deletes expired attempts with no audit event.
        return {}


class LockoutAdmin(LoginRecordAdmin, AccessAttemptAdmin):
    actions = ["clear_lockouts"]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return admin.ModelAdmin.get_actions(self, request)

    @admin.action(description="Clear the lock-out of the selected attempts (audited)")
    def clear_lockouts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        cleared = sum(
            clear_lockout(pk, actor=request.user) for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{cleared} lock-out(s) cleared.", messages.SUCCESS)


for _model, _login_admin in (
    (AccessAttempt, LockoutAdmin),
    (AccessLog, type("AccessLogRecordAdmin", (LoginRecordAdmin, AccessLogAdmin), {})),
    (
        AccessFailureLog,
        type("AccessFailureRecordAdmin", (LoginRecordAdmin, AccessFailureLogAdmin), {}),
    ),
):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _login_admin)
