from __future__ import annotations

import datetime as dt
from typing import Any

from rest_framework import serializers

from core.api import DomainError
from ecus.models import SoftwareChange
from vehicles.models import SavedFilter, VciSnapshot, Vehicle, ZonalGateway
from vehicles.services import parse_vci_timestamp


class VehicleRegisterSerializer(serializers.Serializer):
    vin = serializers.CharField(max_length=17)
    model_name = serializers.CharField(max_length=100)
    model_year = serializers.IntegerField(min_value=1980, max_value=2100)
    vmg_id = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)


class ZonalGatewaySerializer(serializers.ModelSerializer):
    class Meta:
        model = ZonalGateway
        fields = ["gateway_id", "zone_number", "name", "doip_logical_address"]


class VehicleSerializer(serializers.ModelSerializer):
    zonal_gateways = ZonalGatewaySerializer(many=True, read_only=True)
    status = serializers.CharField(read_only=True)
    ecu_count = serializers.SerializerMethodField()

    class Meta:
        model = Vehicle
        fields = [
            "vin",
            "model_name",
            "model_year",
            "vmg_id",
            "status",
            "is_online",
            "last_seen_at",
            "tls_group",
            "tls_signature_algorithm",
            "tls_version",
            "certificate_fingerprint",
            "created_at",
            "zonal_gateways",
            "ecu_count",
        ]

    def get_ecu_count(self, obj: Vehicle) -> int:
        return obj.ecus.count()


class VehicleBriefSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Vehicle
        fields = [
            "vin",
            "model_name",
            "model_year",
            "status",
            "is_online",
            "last_seen_at",
            "tls_group",
            "tls_signature_algorithm",
            "certificate_not_after",
        ]


class VciEcuSerializer(serializers.Serializer):
    """One ECU of a VCI (documentation only: the service validates and names fields)."""

    ecu_id = serializers.CharField()
    sw_version = serializers.CharField()
    hw_version = serializers.CharField()
    part_number = serializers.CharField(required=False)
    supplier = serializers.CharField(required=False)
    serial_number = serializers.CharField(required=False)


class VciSerializer(serializers.Serializer):
    vin = serializers.CharField()
    device_id = serializers.CharField(required=False)
    timestamp = serializers.CharField(help_text="Unix seconds (number) or ISO 8601 text")
    trigger = serializers.CharField(required=False)
    ecus = VciEcuSerializer(many=True)


class VciTimestampSerializer(serializers.Serializer):
    """The VCI's time, checked in front of `ota.vci.record_vci`: its parser accepts an
    ISO time whose offset moves it past the calendar's first or last day, which no database
    column holds."""

    timestamp = serializers.JSONField()

    def validate_timestamp(self, value: Any) -> Any:
        try:
            parse_vci_timestamp(value).astimezone(dt.UTC)
        except OverflowError:
            raise serializers.ValidationError("outside the years 1..9999 in UTC") from None
        except DomainError as exc:
            raise serializers.ValidationError(exc.message) from None
        return value


class PlanItemSerializer(serializers.Serializer):
    ecu_id = serializers.CharField()
    ecu_type = serializers.CharField()
    zonal_gateway_id = serializers.CharField()
    hardware_version = serializers.CharField()
    from_version = serializers.CharField()
    to_version = serializers.CharField()
    firmware_id = serializers.IntegerField()
    priority = serializers.IntegerField()
    reason = serializers.CharField()
    requires = serializers.ListField(child=serializers.CharField())


class VciResultSerializer(serializers.Serializer):
    snapshot_id = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    changed_ecus = serializers.ListField(child=serializers.CharField())
    outdated = PlanItemSerializer(many=True)
    refused = serializers.CharField(allow_blank=True)
    settled_update_id = serializers.IntegerField(allow_null=True)
    settled_update_state = serializers.CharField(allow_null=True)


class VciSnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = VciSnapshot
        fields = [
            "id",
            "device_id",
            "trigger",
            "reported_at",
            "received_at",
            "ecu_count",
            "changed_ecus",
        ]


class SoftwareChangeSerializer(serializers.ModelSerializer):
    ecu_id = serializers.CharField(source="ecu.ecu_id")

    class Meta:
        model = SoftwareChange
        fields = [
            "ecu_id",
            "from_version",
            "to_version",
            "from_hardware_version",
            "to_hardware_version",
            "source",
            "update_id",
            "recorded_at",
        ]


class SavedFilterSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = SavedFilter
        fields = ["id", "name", "description", "query", "created_by", "created_at", "updated_at"]


class SavedFilterWriteSerializer(serializers.Serializer):
    """Shapes only: vehicles.services checks the name is free and the query is valid."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    query = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        help_text="parameters of GET /api/v1/vehicles, e.g. "
        '{"ecu": "ECM", "version": "<2.0.0", "model_name": "Aurora"}',
    )

    def validate_query(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 30:
            raise serializers.ValidationError("at most 30 parameters")
        return value


class VersionRowSerializer(serializers.Serializer):
    version = serializers.CharField()
    count = serializers.IntegerField()
    by_model = serializers.DictField(child=serializers.IntegerField())


class VersionReportSerializer(serializers.Serializer):
    ecu = serializers.CharField()
    total = serializers.IntegerField(help_text="ECUs of this type in the (filtered) fleet")
    models = serializers.ListField(child=serializers.CharField())
    versions = VersionRowSerializer(many=True, help_text="newest version first")
