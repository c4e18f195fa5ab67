"""Filters of the campaign lists (django-filter, refused when unknown: core.filtering)."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from core.filtering import UtcIsoDateTimeFilter
from ecus.models import EcuType
from ota.choices import CampaignStatus, UpdateState
from ota.models import Campaign, OtaUpdate


class CampaignFilter(django_filters.FilterSet):
    """GET /api/v1/campaigns: every parameter narrows the list."""

    status = django_filters.MultipleChoiceFilter(choices=CampaignStatus.choices)
    ecu = django_filters.ModelChoiceFilter(
        queryset=EcuType.objects.all(),
        to_field_name="code",
        field_name="firmware__ecu_type",
        distinct=True,
    )
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Campaign
        fields: list[str] = []


class CampaignVehicleFilter(django_filters.FilterSet):
    """GET /api/v1/campaigns/{id}/vehicles: the campaign's update records."""

    state = django_filters.MultipleChoiceFilter(choices=UpdateState.choices)
    wave = django_filters.NumberFilter(field_name="wave__index", min_value=0, max_value=100)
    search = django_filters.CharFilter(method="_search")

    class Meta:
        model = OtaUpdate
        fields: list[str] = []

    def _search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(vehicle__vin__icontains=value) | Q(error__icontains=value))
