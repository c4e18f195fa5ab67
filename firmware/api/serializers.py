from __future__ import annotations

from typing import Any

from rest_framework import serializers

from firmware.models import Firmware


class FirmwareUploadSerializer(serializers.Serializer):
    """Multipart fields of a firmware upload (shape only; the service checks the rules)."""

    ecu_type = serializers.CharField(max_length=16)
    version = serializers.CharField(max_length=64)
    file = serializers.FileField(allow_empty_file=False, use_url=False)
    hardware_versions = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        help_text="comma-separated hardware versions the image runs on",
    )
    release_notes = serializers.CharField(required=False, allow_blank=True, max_length=10000)

    def validate_hardware_versions(self, value: str) -> list[str]:
        versions = [part.strip() for part in value.split(",") if part.strip()]
        for version in versions:
            if len(version) > 64:
                raise serializers.ValidationError(f"{version[:20]!r}... is longer than 64")
        return versions


class BriefFirmwareSerializer(serializers.ModelSerializer):
    ecu_type = serializers.CharField(source="ecu_type.code")

    class Meta:
        model = Firmware
        fields = ["id", "ecu_type", "version"]


class FirmwareSerializer(serializers.ModelSerializer):
    ecu_type = serializers.CharField(source="ecu_type.code")
    hardware_versions = serializers.SerializerMethodField()

    class Meta:
        model = Firmware
        fields = [
            "id",
            "ecu_type",
            "version",
            "status",
            "size",
            "sha256",
            "original_filename",
            "hardware_versions",
            "created_at",
        ]

    def get_hardware_versions(self, obj: Firmware) -> list[str]:
        return sorted(c.hardware_version for c in obj.compatibilities.all())


class FirmwareDependencySerializer(serializers.Serializer):
    ecu_type = serializers.CharField(source="required_ecu_type.code")
    min_version = serializers.CharField()


class FirmwareDetailSerializer(FirmwareSerializer):
    """One release with what a list leaves out: notes, uploader and dependencies."""

    uploaded_by = serializers.CharField(source="uploaded_by.username", default=None)
    dependencies = FirmwareDependencySerializer(many=True)

    class Meta(FirmwareSerializer.Meta):
        fields = [*FirmwareSerializer.Meta.fields, "release_notes", "uploaded_by", "dependencies"]


def upload_response(firmware: Firmware, same_bytes_as: tuple[Firmware, ...]) -> dict[str, Any]:
    """Body of a successful upload: the release, plus releases with identical bytes."""
    data = dict(FirmwareSerializer(firmware).data)
    data["same_bytes_as"] = BriefFirmwareSerializer(same_bytes_as, many=True).data
    return data
