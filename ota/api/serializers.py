from __future__ import annotations

from rest_framework import serializers

from core.api import BoundedIntegerField
from core.models import AuditEvent
from ota.campaigns import EDITABLE_FIELDS
from ota.models import Campaign, CampaignWave, OtaUpdate
from vehicles.api.serializers import PlanItemSerializer
from vehicles.models import SavedFilter


class UpdateCheckRequestSerializer(serializers.Serializer):
    vin = serializers.CharField(required=False, help_text="optional; must be the caller's VIN")


class PackageSerializer(serializers.Serializer):
    zonal_gateway_id = serializers.CharField()
    package_id = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    download_url = serializers.CharField()
    expires_at = serializers.CharField()
    ecus = serializers.ListField(child=serializers.CharField())


class UpdateCheckSerializer(serializers.Serializer):
    update_available = serializers.BooleanField()
    update_id = serializers.IntegerField(allow_null=True)
    campaign_id = serializers.IntegerField(allow_null=True)
    state = serializers.CharField(allow_null=True)
    possession_nonce = serializers.CharField(
        allow_null=True,
        help_text="64 hex digits, new for every attempt: the HMAC key of package_proofs",
    )
    items = PlanItemSerializer(many=True)
    packages = PackageSerializer(many=True)
    total_size = serializers.IntegerField()
    refused = serializers.CharField(allow_blank=True)


class PackageRequestSerializer(serializers.Serializer):
    update_id = BoundedIntegerField(required=False, min_value=1)
    zonal_gateway_id = serializers.CharField(required=False, max_length=32)


class PackageListSerializer(serializers.Serializer):
    update_id = serializers.IntegerField()
    packages = PackageSerializer(many=True)


class StatusReportSerializer(serializers.Serializer):
    """The shape and bounds of a status report, checked before `ota.services.record_status_report`
    (which judges its content and names the field of any other fault)."""

    update_id = BoundedIntegerField(required=False, min_value=1)
    report_id = serializers.CharField(required=False, max_length=64)
    sequence = BoundedIntegerField(required=False, min_value=0)
    vmg_state = serializers.IntegerField(min_value=0, max_value=6, required=False)
    state = serializers.CharField(
        required=False, max_length=16, help_text="VMG state name instead of vmg_state"
    )
    percentage = serializers.IntegerField(min_value=0, max_value=100, required=False)
    current_step = serializers.CharField(required=False, allow_blank=True, max_length=200)
    error = serializers.CharField(required=False, allow_blank=True, max_length=500)
    running_versions = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=64), required=False
    )
    rolled_back = serializers.BooleanField(required=False)
    package_proofs = serializers.DictField(
        child=serializers.CharField(max_length=64),
        required=False,
        help_text="{package_id: hex HMAC-SHA256(key=possession_nonce, msg=the package file)}",
    )


class UpdateSerializer(serializers.ModelSerializer):
    vin = serializers.CharField(source="vehicle.vin", read_only=True)
    wave = serializers.IntegerField(source="wave.index", read_only=True, allow_null=True)
    targets = serializers.SerializerMethodField()
    state = serializers.CharField(read_only=True)

    class Meta:
        model = OtaUpdate
        fields = [
            "id",
            "vin",
            "campaign",
            "wave",
            "state",
            "vmg_state",
            "progress_percent",
            "current_step",
            "error",
            "attempts",
            "offered_at",
            "last_report_at",
            "deadline_at",
            "next_action_at",
            "finished_at",
            "targets",
        ]

    def get_targets(self, obj: OtaUpdate) -> dict[str, str]:
        return obj.target_versions()


class WaveSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)

    class Meta:
        model = CampaignWave
        fields = [
            "index",
            "percentage",
            "status",
            "accepted_by_operator",
            "started_at",
            "completed_at",
        ]


class FirmwareBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ecu_type = serializers.CharField(source="ecu_type.code")
    version = serializers.CharField()


# The fields an operator may set are the ones the campaign service accepts.
CAMPAIGN_FIELDS = list(EDITABLE_FIELDS)


class CampaignSerializer(serializers.ModelSerializer):
    firmware = FirmwareBriefSerializer(many=True, read_only=True)
    waves = WaveSerializer(many=True, read_only=True)
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Campaign
        fields = [
            "id",
            *CAMPAIGN_FIELDS,
            "status",
            "current_wave",
            "pause_reason",
            "auto_paused",
            "firmware",
            "waves",
            "created_at",
            "started_at",
            "finished_at",
        ]


class CampaignDetailSerializer(CampaignSerializer):
    counts = serializers.SerializerMethodField()

    class Meta(CampaignSerializer.Meta):
        fields = [*CampaignSerializer.Meta.fields, "counts"]

    def get_counts(self, obj: Campaign) -> dict[str, int]:
        return self.context.get("counts", {})


class CampaignWriteSerializer(serializers.Serializer):
    """Shapes of a campaign; cross-field and database rules live in ota.campaigns."""

    name = serializers.CharField(max_length=120)
    description = serializers.CharField(required=False, allow_blank=True)
    firmware_ids = serializers.ListField(
        child=BoundedIntegerField(min_value=1), min_length=1, max_length=100
    )
    target_model_names = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=1000
    )
    target_model_years = serializers.ListField(
        child=serializers.IntegerField(min_value=1980, max_value=2100),
        required=False,
        max_length=200,
    )
    target_zones = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=100
    )
    target_vins = serializers.ListField(
        child=serializers.CharField(max_length=17), required=False, max_length=100_000
    )
    min_current_version = serializers.CharField(max_length=64, required=False, allow_blank=True)
    max_current_version = serializers.CharField(max_length=64, required=False, allow_blank=True)
    wave_percentages = serializers.ListField(
        child=serializers.FloatField(), required=False, min_length=1, max_length=20
    )
    success_threshold = serializers.FloatField(required=False)
    failure_threshold = serializers.FloatField(required=False)
    start_at = serializers.DateTimeField(required=False, allow_null=True)
    maintenance_window_start = serializers.TimeField(required=False, allow_null=True)
    maintenance_window_end = serializers.TimeField(required=False, allow_null=True)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=20)
    retry_backoff_seconds = serializers.IntegerField(
        required=False, min_value=0, max_value=7 * 86400
    )
    vehicle_timeout_seconds = serializers.IntegerField(
        required=False, allow_null=True, min_value=60, max_value=30 * 86400
    )
    target_filter = serializers.PrimaryKeyRelatedField(
        queryset=SavedFilter.objects.all(), required=False, allow_null=True
    )


class CampaignPauseSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=300)


class CampaignActionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    detail = serializers.CharField()


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor_label",
            "action",
            "vehicle_vin",
            "object_type",
            "object_id",
            "before",
            "after",
            "details",
            "previous_hash",
            "entry_hash",
        ]
