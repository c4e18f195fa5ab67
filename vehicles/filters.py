"""The fleet list's filters: one definition for the API, the console and saved filters."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

import django_filters
from django import forms
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from core.api import DomainError
from core.filtering import UtcIsoDateTimeFilter
from core.jsonlimits import MAX_DB_INTEGER
from ecus.models import Ecu, EcuType
from ecus.versions import InvalidVersion, SemVer
from vehicles.choices import VehicleStatus
from vehicles.models import Vehicle

# Comparison operators of a version expression and the lookup on the stored sort key.
VERSION_OPERATORS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "=": "exact", "==": "exact"}
# `ECM<2.0.0`, `ECM=2.1.0`, `>=1.0.0,<2.0.0`, `2.1.0`: an optional ECU type code (a version
# never starts with a letter) that an operator must follow, then comma-separated clauses.
_EXPRESSION = re.compile(
    r"\s*(?:(?P<ecu>[A-Za-z][A-Za-z0-9_]*)\s*(?=[<>=]))?(?P<clauses>.*)", re.DOTALL
)
_CLAUSE = re.compile(r"\s*(?P<op><=|>=|==|<|>|=)?\s*(?P<version>\S+?)\s*")
# The parameters that describe one ECU of the vehicle; given together, the same ECU matches all.
ECU_PARAMETERS = ("ecu", "version", "zone", "firmware")
# The fleet list counts a filter on ECUs up to this many vehicles (ten pages), then says "more
# than". The exact total reads the ECUs of every candidate vehicle: 8x the trivial page at 100k
# vehicles (bench/inventory.py), where a count that stops here reads as much as ten pages do.
# The version report gives exact counts by version.
ECU_COUNT_LIMIT = 500


@dataclass(frozen=True)
class VersionExpression:
    """A parsed `?version=`: an optional ECU type code and (lookup, sort key) clauses."""

    ecu: str | None
    clauses: tuple[tuple[str, str], ...]

    def lookups(self) -> Q:
        match = Q()
        for lookup, key in self.clauses:
            match &= Q(**{f"sw_version_key__{lookup}": key})
        return match


def parse_version_expression(text: str) -> VersionExpression:
    """`ECM<2.0.0`, `ECM=2.1.0`, `>=1.0.0,<2.0.0` or `2.1.0`; ValueError says what is wrong."""
    found = _EXPRESSION.fullmatch(text)
    if found is None or not found["clauses"].strip():
        raise ValueError("a version or range such as <2.0.0, >=1.0.0,<2.0.0 or ECM<2.0.0")
    clauses = []
    for part in found["clauses"].split(","):
        clause = _CLAUSE.fullmatch(part)
        if clause is None:
            raise ValueError(f"{part.strip()!r}: expected an operator and a version, e.g. <2.0.0")
        try:
            key = SemVer.parse(clause["version"]).sort_key
        except InvalidVersion:
            raise ValueError(f"{clause['version']!r} is not a semantic version") from None
        clauses.append((VERSION_OPERATORS[clause["op"] or "="], key))
    return VersionExpression(ecu=found["ecu"], clauses=tuple(clauses))


class VersionExpressionField(forms.CharField):
    def clean(self, value: Any) -> VersionExpression | None:
        text = super().clean(value)
        if not text:
            return None
        try:
            return parse_version_expression(text)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class VersionExpressionFilter(django_filters.Filter):
    field_class = VersionExpressionField


class StrictBooleanField(forms.Field):
    """true/false (or 1/0); anything else is an error, not "no filter" as in django-filter."""

    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def clean(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text not in self.VALUES:
            raise forms.ValidationError("true or false")
        return self.VALUES[text]


class StrictBooleanFilter(django_filters.Filter):
    field_class = StrictBooleanField


class IntegerFilter(django_filters.NumberFilter):
    """A whole number in the range given (django-filter's NumberFilter takes any decimal)."""

    field_class = forms.IntegerField


def _year(**kwargs: Any) -> IntegerFilter:
    return IntegerFilter(field_name="model_year", min_value=1980, max_value=2100, **kwargs)


def _row_id(method: str) -> IntegerFilter:
    return IntegerFilter(method=method, min_value=1, max_value=MAX_DB_INTEGER)


class VehicleFilter(django_filters.FilterSet):
    """Filters of GET /api/v1/vehicles; every parameter narrows the list (AND)."""

    status = django_filters.ChoiceFilter(choices=VehicleStatus.choices)
    online = StrictBooleanFilter(field_name="is_online")
    model_name = django_filters.CharFilter()
    model_year = _year()
    model_year_min = _year(lookup_expr="gte")
    model_year_max = _year(lookup_expr="lte")
    ecu = django_filters.ModelChoiceFilter(
        queryset=EcuType.objects.all(), to_field_name="code", method="_ecu_parameter"
    )
    version = VersionExpressionFilter(method="_ecu_parameter")
    zone = django_filters.CharFilter(method="_ecu_parameter")
    firmware = _row_id("_ecu_parameter")
    group = django_filters.CharFilter(field_name="tls_group")
    signature = django_filters.CharFilter(field_name="tls_signature_algorithm")
    certificate_expires_before = UtcIsoDateTimeFilter(
        field_name="certificate_not_after", lookup_expr="lt"
    )
    certificate_expires_after = UtcIsoDateTimeFilter(
        field_name="certificate_not_after", lookup_expr="gte"
    )
    certificate_expires_within_days = IntegerFilter(
        method="_expires_within", min_value=0, max_value=36500
    )
    campaign = _row_id("_in_campaign")
    search = django_filters.CharFilter(method="_search")

    class Meta:
        model = Vehicle
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        ecus = self._matching_ecus()
        if ecus is not None:
            # A semi-join on the ECU (type, version key) index, see ota.campaigns.
            queryset = queryset.filter(pk__in=ecus.values("vehicle_id"))
        return queryset

    def _matching_ecus(self) -> QuerySet | None:
        data = self.form.cleaned_data
        ecu_type, expression = data.get("ecu"), data.get("version")
        zone, firmware = data.get("zone"), data.get("firmware")
        if ecu_type is None and expression is None and not zone and firmware is None:
            return None
        ecus = Ecu.objects.all()
        if ecu_type is not None:
            ecus = ecus.filter(ecu_type=ecu_type)
        if expression is not None:
            if expression.ecu:
                if ecu_type is not None and ecu_type.code != expression.ecu:
                    raise DomainError(
                        f"names ECU type {expression.ecu}, but ecu is {ecu_type.code}",
                        field="version",
                    )
                if ecu_type is None:
                    ecus = ecus.filter(ecu_type__code=expression.ecu)
            ecus = ecus.filter(expression.lookups())
        if zone:
            ecus = ecus.filter(zonal_gateway__gateway_id=zone)
        if firmware is not None:
            # Runs the release: the ECU of its type is on its version.
            ecus = ecus.filter(
                ecu_type__firmware__pk=firmware,
                sw_version_key=F("ecu_type__firmware__version_key"),
            )
        return ecus

    def _ecu_parameter(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        return queryset  # combined into one ECU condition in filter_queryset

    def _expires_within(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        horizon = timezone.now() + datetime.timedelta(days=int(value))
        return queryset.filter(certificate_not_after__lt=horizon)

    def _in_campaign(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        # The campaign's update records name the vehicle; ota sits above vehicles, so the
        # relation is followed by name rather than imported.
        members = Vehicle.objects.filter(ota_updates__campaign_id=int(value)).values("pk")
        return queryset.filter(pk__in=members)

    def _search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(vin__icontains=value) | Q(model_name__icontains=value) | Q(vmg_id__icontains=value)
        )


def count_limit(query: Any) -> int | None:
    """How far the fleet list counts the vehicles `query` selects: no limit (exact) unless it
    names an ECU parameter."""
    if any(query.get(name) not in (None, "") for name in ECU_PARAMETERS):
        return ECU_COUNT_LIMIT
    return None


def filter_vehicles(query: dict[str, Any], queryset: QuerySet | None = None) -> QuerySet:
    """The vehicles a query (the list's parameters as a dict) selects, or DomainError naming
    the first parameter that is unknown or malformed."""
    unknown = sorted(set(query) - set(VehicleFilter.base_filters))
    if unknown:
        raise DomainError(f"unknown filter parameter {unknown[0]!r}", field=unknown[0])
    data = {name: str(value) for name, value in query.items() if value not in ("", None)}
    filterset = VehicleFilter(
        data=data, queryset=Vehicle.objects.all() if queryset is None else queryset
    )
    if not filterset.is_valid():
        name, errors = next(iter(filterset.errors.items()))
        raise DomainError(f"{name}: {' '.join(errors)}", field=name)
    return filterset.qs
