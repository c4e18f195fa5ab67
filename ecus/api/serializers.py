from __future__ import annotations

from rest_framework import serializers

from ecus.models import Ecu


class EcuSerializer(serializers.ModelSerializer):
    vin = serializers.CharField(source="vehicle.vin", read_only=True)
    ecu_type = serializers.CharField(source="ecu_type.code", read_only=True)
    zonal_gateway_id = serializers.CharField(source="zonal_gateway.gateway_id", read_only=True)

    class Meta:
        model = Ecu
        fields = [
            "vin",
            "ecu_id",
            "ecu_type",
            "zonal_gateway_id",
            "hardware_version",
            "sw_version",
            "target_sw_version",
            "doip_logical_address",
            "update_priority",
            "part_number",
            "supplier",
            "serial_number",
            "updated_at",
        ]


class EcuVersionSerializer(serializers.Serializer):
    """Shape only: the service checks that the versions parse and names the field."""

    sw_version = serializers.CharField(max_length=64)
    hw_version = serializers.CharField(max_length=64, required=False)
