from __future__ import annotations

from rest_framework import serializers

from core.api import BoundedIntegerField
from diagnostics.choices import ControlCommandName
from diagnostics.models import (
    ControlCommand,
    DiagnosticRequest,
    DiagnosticResult,
    TelemetryLatest,
    TelemetrySample,
)
from diagnostics.services.control import DEFAULT_CONTROL_TIMEOUT_S
from diagnostics.services.remote import MAX_TIMEOUT_MS, MIN_TIMEOUT_MS


class DiagnosticSendSerializer(serializers.Serializer):
    vin = serializers.CharField(max_length=17)
    ecu_id = serializers.CharField(max_length=16, required=False, allow_blank=False)
    zone = serializers.CharField(max_length=32, required=False, allow_blank=False)
    service = serializers.JSONField(help_text='0x22, "0x22", 34 or "ReadDataByIdentifier"')
    params = serializers.DictField(required=False, default=dict)
    timeout_ms = serializers.IntegerField(
        min_value=MIN_TIMEOUT_MS, max_value=MAX_TIMEOUT_MS, default=5000
    )

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("ecu_id")) == bool(attrs.get("zone")):
            raise serializers.ValidationError({"ecu_id": ["give either ecu_id or zone"]})
        return attrs


class DiagnosticResultSerializer(serializers.ModelSerializer):
    ecu_id = serializers.CharField(source="ecu.ecu_id")

    class Meta:
        model = DiagnosticResult
        fields = ["ecu_id", "outcome", "response_hex", "decoded", "nrc", "nrc_name", "received_at"]


class DiagnosticRequestSerializer(serializers.ModelSerializer):
    vin = serializers.CharField(source="vehicle.vin")
    zone = serializers.CharField(source="zonal_gateway.gateway_id", default=None)
    duration_ms = serializers.IntegerField(read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", default=None)
    results = DiagnosticResultSerializer(many=True)
    summary = serializers.SerializerMethodField()

    class Meta:
        model = DiagnosticRequest
        fields = [
            "request_id",
            "vin",
            "scope",
            "zone",
            "service_id",
            "parameters",
            "request_hex",
            "timeout_ms",
            "status",
            "requested_by",
            "created_at",
            "deadline_at",
            "completed_at",
            "duration_ms",
            "summary",
            "results",
        ]

    def get_summary(self, obj: DiagnosticRequest) -> dict[str, int]:
        summary: dict[str, int] = {}
        for result in obj.results.all():
            summary[result.outcome] = summary.get(result.outcome, 0) + 1
        return summary


class ControlSendSerializer(serializers.Serializer):
    command = serializers.ChoiceField(choices=ControlCommandName.choices)
    vins = serializers.ListField(
        child=serializers.CharField(max_length=17), required=False, allow_empty=False
    )
    campaign_id = BoundedIntegerField(required=False, min_value=1)
    params = serializers.DictField(required=False, default=dict)
    timeout_s = serializers.IntegerField(
        min_value=1, max_value=86400, default=DEFAULT_CONTROL_TIMEOUT_S
    )

    def validate(self, attrs: dict) -> dict:
        if bool(attrs.get("vins")) == ("campaign_id" in attrs):
            raise serializers.ValidationError({"vins": ["give either vins or campaign_id"]})
        return attrs


class ControlCommandSerializer(serializers.ModelSerializer):
    vin = serializers.CharField(source="vehicle.vin")
    issued_by = serializers.CharField(source="issued_by.username", default=None)

    class Meta:
        model = ControlCommand
        fields = [
            "command_id",
            "batch_id",
            "vin",
            "command",
            "params",
            "status",
            "issued_by",
            "created_at",
            "deadline_at",
            "acknowledged_at",
            "finished_at",
            "detail",
            "result",
        ]


class TelemetrySampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = TelemetrySample
        fields = ["seq", "reported_at", "received_at", "values"]


class TelemetryLatestSerializer(serializers.ModelSerializer):
    class Meta:
        model = TelemetryLatest
        fields = ["seq", "reported_at", "received_at", "values"]


class ControlSendResultSerializer(serializers.Serializer):
    """What a send answers: its batch id and one command per vehicle."""

    batch_id = serializers.UUIDField()
    commands = ControlCommandSerializer(many=True)


class ControlBatchSerializer(serializers.Serializer):
    batch_id = serializers.UUIDField()
    counts = serializers.DictField(child=serializers.IntegerField(), required=False)
    commands = ControlCommandSerializer(many=True)


class TelemetryViewSerializer(serializers.Serializer):
    vin = serializers.CharField()
    is_online = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    latest = TelemetryLatestSerializer(allow_null=True)
    history = TelemetrySampleSerializer(many=True)


class InboundDropSerializer(serializers.Serializer):
    dropped = serializers.DictField(child=serializers.IntegerField())
