"""Endpoints are registered and changed here through the service; deliveries are shown, with
every attempt, and replayed through the service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from core.admin import ReadOnlyInline, ReadOnlyModelAdmin
from core.api import DomainError
from webhooks import services
from webhooks.choices import EventType
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "event_types", "active"]

    def clean(self) -> dict[str, Any]:
        """The service's rules, so that saving through it cannot fail afterwards."""
        cleaned = super().clean()
        for name, rule in (
            ("url", services.validate_url),
            ("event_types", services.validate_event_types),
        ):
            if cleaned.get(name):
                try:
                    cleaned[name] = rule(cleaned[name])
                except DomainError as exc:
                    self.add_error(name, exc.message)
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "url", "active", "created_at"]
    readonly_fields = ["secret", "created_by", "created_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: deliveries keep their endpoint

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        if change:
            data = {name: form.cleaned_data[name] for name in form.changed_data}
            saved = services.change_endpoint(obj, actor=request.user, **data)
        else:
            saved = services.register_endpoint(
                actor=request.user,
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"],
                event_types=list(form.cleaned_data["event_types"]),
            )
        obj.pk, obj.secret = saved.pk, saved.secret


class AttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    extra = 0
    fields = ["number", "started_at", "duration_ms", "status_code", "error"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyModelAdmin):
    list_display = [
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint"]
    readonly_fields = [
        "endpoint",
        "event_id",
        "event_type",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    inlines = [AttemptInline]
    actions = ["replay"]

    @admin.action(description="Replay the selected deliveries")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            services.replay_delivery(delivery, actor=request.user)
        self.message_user(request, f"{queryset.count()} deliveries queued again", messages.SUCCESS)
