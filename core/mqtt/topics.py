"""The MQTT topic tree: `vehicle/{vin}/...`, one subtree per vehicle so a per-vehicle ACL is a prefix.

The root ("vehicle") can be changed with settings.MQTT_TOPIC_ROOT so that several fleets, or
parallel test runs, share one broker without seeing each other's messages.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from django.conf import settings

DEFAULT_ROOT = "vehicle"
SHARE_GROUP = "ota-bridge"

# Vehicle -> server (the bridge subscribes to these).
TELEMETRY = "telemetry"
STATUS = "status"
OTA_STATUS = "ota/status"
CONTROL_RESPONSE = "control/response"
DIAGNOSTICS_RESPONSE = "diagnostics/response"
INBOUND_KINDS = (TELEMETRY, STATUS, OTA_STATUS, CONTROL_RESPONSE, DIAGNOSTICS_RESPONSE)

# Server -> vehicle.
CONTROL = "control"
DIAGNOSTICS = "diagnostics"
DESIRED_STATE = "desired-state"
OUTBOUND_KINDS = (CONTROL, DIAGNOSTICS, DESIRED_STATE)

_VIN = r"[A-HJ-NPR-Z0-9]{17}"


@dataclass(frozen=True)
class InboundTopic:
    vin: str
    kind: str


def topic_root() -> str:
    return getattr(settings, "MQTT_TOPIC_ROOT", DEFAULT_ROOT) or DEFAULT_ROOT


def topic_for(vin: str, kind: str, *, root: str | None = None) -> str:
    return f"{root or topic_root()}/{vin}/{kind}"


@functools.lru_cache(maxsize=8)
def _inbound_pattern(root: str) -> re.Pattern[str]:
    kinds = "|".join(re.escape(k) for k in INBOUND_KINDS)
    return re.compile(rf"\A{re.escape(root)}/(?P<vin>{_VIN})/(?P<kind>{kinds})\Z")


def parse_inbound(topic: str, *, root: str | None = None) -> InboundTopic | None:
    """The VIN and message kind of a vehicle->server topic, or None for anything else."""
    match = _inbound_pattern(root or topic_root()).match(topic)
    if match is None:
        return None
    return InboundTopic(vin=match["vin"], kind=match["kind"])


def subscription_filters(*, shared: bool, root: str | None = None) -> list[str]:
    """Filters the bridge subscribes to; shared ones let several bridges split the stream."""
    base = root or topic_root()
    filters = [f"{base}/+/{kind}" for kind in INBOUND_KINDS]
    if shared:
        return [f"$share/{SHARE_GROUP}/{f}" for f in filters]
    return filters
