"""Response shapes of the TLS identity endpoints (also what the OpenAPI schema shows)."""

from __future__ import annotations

from rest_framework import serializers


class TlsIdentitySerializer(serializers.Serializer):
    """The caller's mutual-TLS connection as the listener saw it at the handshake."""

    vin = serializers.CharField(help_text="Subject CN of the client certificate.")
    group = serializers.CharField(
        allow_null=True, help_text="Negotiated key-exchange group (OpenSSL name)."
    )
    signature_algorithm = serializers.CharField(
        allow_null=True, help_text="Signature scheme of the server certificate."
    )
    version = serializers.CharField(allow_null=True, help_text="TLS protocol version.")
    cipher = serializers.CharField(allow_null=True, help_text="Negotiated cipher suite.")
    cert_fingerprint = serializers.CharField(
        allow_null=True, help_text="SHA-256 fingerprint of the client certificate."
    )
    cert_serial = serializers.CharField(
        allow_null=True, help_text="Serial number of the client certificate (hex)."
    )
    registered = serializers.BooleanField(help_text="Whether the VIN is a registered vehicle.")
