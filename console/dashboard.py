"""Read-side queries for the operator dashboard: plain data for templates, no writes.

Workflows (start a campaign, send a UDS request) stay in their apps' services; this module only
reads, importing the models of the apps below it directly.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from core.api import DomainError
from core.models import AuditEvent
from core.pagination import KeysetPagination
from diagnostics.models import DiagnosticRequest, TelemetryLatest
from ecus.models import Ecu, EcuType
from firmware.choices import FirmwareStatus
from firmware.models import Firmware
from ota.choices import CampaignStatus, UpdateState
from ota.models import Campaign, CampaignWave, OtaUpdate
from ota.update_log import vehicle_update_log
from pqc.pki import FleetPki
from vehicles.choices import VehicleStatus
from vehicles.filters import count_limit, filter_vehicles
from vehicles.models import SavedFilter, Vehicle
from vehicles.reports import version_report

logger = logging.getLogger(__name__)

# An update that has not moved for this long is "stuck" on the overview.
STUCK_AFTER = datetime.timedelta(hours=1)
# Failure spike: at least this many failures in the window, and this share of the outcomes.
FAILURE_WINDOW = datetime.timedelta(hours=1)
FAILURE_SPIKE_MIN = 3
FAILURE_SPIKE_RATIO = 0.2
# Certificates expiring within this horizon are flagged.
CERT_EXPIRY_HORIZON = datetime.timedelta(days=30)

TERMINAL_UPDATE_STATES = {
    UpdateState.SUCCEEDED,
    UpdateState.FAILED,
    UpdateState.ROLLED_BACK,
    UpdateState.CANCELLED,
}
FAILED_UPDATE_STATES = {UpdateState.FAILED, UpdateState.ROLLED_BACK}

# Palette used by the adoption chart, newest version first; older versions share the last one.
# ECUs already on the newest released firmware get their own colour whatever its rank.
VERSION_COLOURS = ["#1f7a4d", "#3f9b6e", "#8cc7a4", "#c9ced6"]
NEWEST_RELEASE_COLOUR = "#1e63b6"


# -- fleet overview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    key: str
    label: str
    count: int
    percent: float


@dataclass(frozen=True)
class ChartSegment:
    label: str
    count: int
    x: float
    width: float
    colour: str


@dataclass(frozen=True)
class AdoptionRow:
    code: str
    name: str
    total: int
    newest_version: str
    on_newest: int
    percent_on_newest: float
    segments: list[ChartSegment]
    y: int = 0


@dataclass(frozen=True)
class Alert:
    level: str  # "critical" | "warning" | "info"
    title: str
    detail: str
    link: str = ""


def _tallies(counts: dict[str, int], labels: dict[str, str], total: int) -> list[Tally]:
    return [
        Tally(
            key=key,
            label=str(label),
            count=counts.get(key, 0),
            percent=round(100.0 * counts.get(key, 0) / total, 1) if total else 0.0,
        )
        for key, label in labels.items()
    ]


def vehicle_state_counts() -> dict[str, Any]:
    """Vehicles by lifecycle status and by online state."""
    rows = Vehicle.objects.values("status").annotate(n=Count("id"))
    by_status = {row["status"]: row["n"] for row in rows}
    total = sum(by_status.values())
    online = Vehicle.objects.filter(is_online=True).count()
    return {
        "total": total,
        "online": online,
        "offline": total - online,
        "online_percent": round(100.0 * online / total, 1) if total else 0.0,
        "by_status": _tallies(by_status, dict(VehicleStatus.choices), total),
    }


def firmware_adoption(*, row_height: int = 22) -> list[AdoptionRow]:
    """Per ECU type: how many ECUs in the fleet run each version, and the share on the newest
    available firmware. Coordinates are percentages of the chart width for the SVG template."""
    counts = (
        Ecu.objects.values("ecu_type__code", "sw_version", "sw_version_key")
        .annotate(n=Count("id"))
        .order_by("ecu_type__code", "-sw_version_key")
    )
    versions: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for row in counts:
        versions[row["ecu_type__code"]].append((row["sw_version"], row["n"]))
    newest_key = {
        row["ecu_type__code"]: row["key"]
        for row in Firmware.objects.filter(status=FirmwareStatus.AVAILABLE)
        .values("ecu_type__code")
        .annotate(key=Max("version_key"))
    }
    newest_version = {
        fw.ecu_type.code: fw.version
        for fw in Firmware.objects.select_related("ecu_type").filter(
            version_key__in=list(newest_key.values())
        )
        if newest_key.get(fw.ecu_type.code) == fw.version_key
    }
    names = dict(EcuType.objects.values_list("code", "name"))
    result = []
    for index, code in enumerate(sorted(versions)):
        per_version = versions[code]
        total = sum(n for _, n in per_version)
        newest = newest_version.get(code, "")
        on_newest = sum(n for version, n in per_version if version == newest)
        segments = []
        x = 0.0
        shown = per_version[: len(VERSION_COLOURS) - 1]
        rest = per_version[len(VERSION_COLOURS) - 1 :]
        for position, (version, n) in enumerate(shown):
            width = 100.0 * n / total
            colour = NEWEST_RELEASE_COLOUR if version == newest else VERSION_COLOURS[position]
            segments.append(ChartSegment(version, n, round(x, 2), round(width, 2), colour))
            x += width
        if rest:
            n = sum(count for _, count in rest)
            width = 100.0 * n / total
            segments.append(
                ChartSegment(
                    f"{len(rest)} older", n, round(x, 2), round(width, 2), VERSION_COLOURS[-1]
                )
            )
        result.append(
            AdoptionRow(
                code=code,
                name=names.get(code, code),
                total=total,
                newest_version=newest,
                on_newest=on_newest,
                percent_on_newest=round(100.0 * on_newest / total, 1) if total else 0.0,
                segments=segments,
                y=index * row_height,
            )
        )
    return result


def stuck_updates(*, now: datetime.datetime | None = None, limit: int = 20) -> list[Any]:
    """Vehicle updates in a non-terminal state that have not moved for STUCK_AFTER."""
    now = now or timezone.now()
    return list(
        OtaUpdate.objects.exclude(state__in=TERMINAL_UPDATE_STATES)
        .filter(updated_at__lt=now - STUCK_AFTER)
        .select_related("vehicle")
        .order_by("updated_at")[:limit]
    )


def failure_rate(*, now: datetime.datetime | None = None) -> dict[str, int]:
    """Finished and failed vehicle updates within FAILURE_WINDOW."""
    now = now or timezone.now()
    recent = OtaUpdate.objects.filter(updated_at__gte=now - FAILURE_WINDOW)
    counts = recent.aggregate(
        finished=Count("id", filter=Q(state__in=TERMINAL_UPDATE_STATES)),
        failed=Count("id", filter=Q(state__in=FAILED_UPDATE_STATES)),
    )
    return {"finished": counts["finished"] or 0, "failed": counts["failed"] or 0}


@dataclass(frozen=True)
class CertificateRow:
    serial: str
    kind: str
    subject: str
    family: str
    not_after: datetime.datetime
    revoked: bool
    fingerprint: str
    days_left: int


def certificate_inventory(*, now: datetime.datetime | None = None) -> list[CertificateRow]:
    """Certificates the fleet PKI issued, soonest expiry first; empty when no PKI exists."""
    try:
        infos = FleetPki.from_settings().list_certificates()
    except Exception:
        # A missing or half-initialised PKI must not take the dashboard down with it.
        logger.info("certificate inventory unavailable", exc_info=True)
        return []
    now = now or timezone.now()
    rows = [
        CertificateRow(
            serial=info.serial,
            kind=info.kind,
            subject=info.subject,
            family=info.family,
            not_after=info.not_after,
            revoked=info.revoked,
            fingerprint=info.fingerprint,
            days_left=(info.not_after - now).days,
        )
        for info in infos
    ]
    return sorted(rows, key=lambda row: row.not_after)


def fleet_alerts(*, now: datetime.datetime | None = None) -> list[Alert]:
    """Stuck vehicles, failure spikes and certificates about to expire."""
    now = now or timezone.now()
    alerts: list[Alert] = []
    for update in stuck_updates(now=now, limit=5):
        minutes = int((now - update.updated_at).total_seconds() // 60)
        alerts.append(
            Alert(
                "warning",
                f"{update.vehicle.vin} stuck in {update.get_state_display().lower()}",
                f"no progress for {minutes} min",
                f"/vehicles/{update.vehicle.vin}/",
            )
        )
    rate = failure_rate(now=now)
    if rate["failed"] >= FAILURE_SPIKE_MIN and rate["failed"] >= FAILURE_SPIKE_RATIO * max(
        rate["finished"], 1
    ):
        alerts.append(
            Alert(
                "critical",
                "Failure spike",
                f"{rate['failed']} of {rate['finished']} updates failed in the last hour",
                "/campaigns/",
            )
        )
    for cert in certificate_inventory(now=now):
        if cert.revoked or cert.not_after - now > CERT_EXPIRY_HORIZON:
            continue
        level = "critical" if cert.days_left < 7 else "warning"
        verb = "expired" if cert.days_left < 0 else f"expires in {cert.days_left} days"
        alerts.append(Alert(level, f"{cert.kind} certificate {verb}", cert.subject))
    return alerts


# -- campaigns --------------------------------------------------------------------------------

ACTIVE_CAMPAIGN_STATES = {
    CampaignStatus.SCHEDULED,
    CampaignStatus.RUNNING,
    CampaignStatus.PAUSED,
}


@dataclass
class CampaignSummary:
    pk: int
    name: str
    status: str
    status_label: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    pending: int = 0
    cancelled: int = 0
    created_at: datetime.datetime | None = None
    waves: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done_percent(self) -> float:
        finished = self.succeeded + self.failed + self.cancelled
        return round(100.0 * finished / self.total, 1) if self.total else 0.0

    @property
    def success_percent(self) -> float:
        return round(100.0 * self.succeeded / self.total, 1) if self.total else 0.0

    @property
    def failure_percent(self) -> float:
        return round(100.0 * self.failed / self.total, 1) if self.total else 0.0

    @property
    def success_ratio(self) -> float:
        """Succeeded share of the finished vehicles."""
        finished = self.succeeded + self.failed
        return round(100.0 * self.succeeded / finished, 1) if finished else 0.0


def _bucket_of(state: str) -> str:
    if state == UpdateState.SUCCEEDED:
        return "succeeded"
    if state in FAILED_UPDATE_STATES:
        return "failed"
    if state == UpdateState.CANCELLED:
        return "cancelled"
    if state in (UpdateState.QUEUED, UpdateState.OFFERED):
        # Offered but not yet picked up: the vehicle has not started working on it.
        return "pending"
    return "in_progress"


def _campaign_updates(campaign: Campaign) -> QuerySet[OtaUpdate]:
    return OtaUpdate.objects.filter(campaign=campaign)


def _add(summary: CampaignSummary, bucket: str, n: int) -> None:
    setattr(summary, bucket, getattr(summary, bucket) + n)
    summary.total += n


def summarise_campaign(campaign: Campaign) -> CampaignSummary:
    """Counts per outcome for one campaign, and per wave when the campaign has waves."""
    summary = CampaignSummary(
        pk=campaign.pk,
        name=campaign.name,
        status=str(campaign.status),
        status_label=campaign.get_status_display(),
        created_at=campaign.created_at,
    )
    waves: dict[Any, CampaignSummary] = {}
    for row in _campaign_updates(campaign).values("state", "wave").annotate(n=Count("id")):
        bucket = _bucket_of(row["state"])
        _add(summary, bucket, row["n"])
        wave = waves.setdefault(
            row["wave"],
            CampaignSummary(pk=row["wave"] or 0, name="", status="", status_label=""),
        )
        _add(wave, bucket, row["n"])
    summary.waves = _wave_rows(campaign, waves)
    return summary


def _wave_rows(campaign: Campaign, counts: dict[Any, CampaignSummary]) -> list[dict[str, Any]]:
    rows = []
    for wave in CampaignWave.objects.filter(campaign=campaign).order_by("index"):
        stats = counts.get(wave.pk) or CampaignSummary(
            pk=wave.pk, name="", status="", status_label=""
        )
        rows.append(
            {
                "pk": wave.pk,
                "name": f"Wave {wave.index + 1}",
                "percentage": wave.percentage,
                "status": wave.get_status_display(),
                "stats": stats,
            }
        )
    return rows


def campaigns_in_flight(*, limit: int = 10) -> list[CampaignSummary]:
    queryset = Campaign.objects.filter(status__in=ACTIVE_CAMPAIGN_STATES)
    return [summarise_campaign(c) for c in queryset.order_by("-pk")[:limit]]


def campaign_list(*, limit: int = 100) -> list[CampaignSummary]:
    return [summarise_campaign(c) for c in Campaign.objects.order_by("-pk")[:limit]]


def audit_trail(
    *, object_type: str = "", object_id: Any = "", vehicle_vin: str = "", limit: int = 15
) -> list[Any]:
    """Newest audit events about one object or one vehicle."""
    queryset = AuditEvent.objects.order_by("-id")
    if object_type:
        queryset = queryset.filter(object_type=object_type, object_id=str(object_id))
    if vehicle_vin:
        queryset = queryset.filter(vehicle_vin=vehicle_vin)
    return list(queryset[:limit])


def firmware_choices(*, limit: int = 500) -> list[tuple[int, str]]:
    """Available firmware releases as (id, label) for the campaign form."""
    return [
        (fw.pk, f"{fw.ecu_type.code} {fw.version}")
        for fw in Firmware.objects.filter(status=FirmwareStatus.AVAILABLE)
        .select_related("ecu_type")
        .order_by("ecu_type__code", "-version_key")[:limit]
    ]


def campaign_firmware(campaign: Campaign) -> list[Firmware]:
    return list(campaign.firmware.select_related("ecu_type").order_by("ecu_type__code"))


def campaign_vehicle_rows(campaign: Campaign, *, limit: int = 500) -> list[OtaUpdate]:
    return list(
        _campaign_updates(campaign).select_related("vehicle").order_by("vehicle__vin")[:limit]
    )


def fleet_overview(*, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Everything the fleet page shows, as plain data."""
    adoption = firmware_adoption()
    return {
        "vehicles": vehicle_state_counts(),
        "adoption": adoption,
        "adoption_height": len(adoption) * 22,
        "campaigns": campaigns_in_flight(),
        "alerts": fleet_alerts(now=now),
    }


# -- vehicles ---------------------------------------------------------------------------------


def ecus_by_zone(vehicle: Vehicle) -> list[dict[str, Any]]:
    """The vehicle's ECUs grouped by zonal gateway, in zone order."""
    ecus = list(
        Ecu.objects.filter(vehicle=vehicle)
        .select_related("ecu_type", "zonal_gateway")
        .order_by("zonal_gateway__zone_number", "ecu_id")
    )
    zones: dict[int, dict[str, Any]] = {}
    for ecu in ecus:
        gateway = ecu.zonal_gateway
        zone = zones.setdefault(gateway.pk, {"gateway": gateway, "ecus": [], "pending": 0})
        zone["ecus"].append(ecu)
        if ecu.target_sw_version and ecu.target_sw_version != ecu.sw_version:
            zone["pending"] += 1
    return list(zones.values())


def vehicle_updates(vehicle: Vehicle, *, limit: int = 50) -> list[Any]:
    queryset = OtaUpdate.objects.filter(vehicle=vehicle).select_related("campaign")
    return list(queryset.order_by("-created_at")[:limit])


def latest_telemetry(vehicle: Vehicle) -> dict[str, Any] | None:
    """The newest value of every telemetry signal of the vehicle, with when it was reported."""
    latest = TelemetryLatest.objects.filter(vehicle=vehicle).first()
    if latest is None:
        return None
    values = latest.values if isinstance(latest.values, dict) else {}
    return {
        "reported_at": latest.reported_at,
        "received_at": latest.received_at,
        "signals": sorted((str(key).replace("_", " "), value) for key, value in values.items()),
    }


@dataclass(frozen=True)
class CryptoPosture:
    group: str
    signature_algorithm: str
    version: str
    seen_at: datetime.datetime | None
    configuration: Any
    certificate: CertificateRow | None


def vehicle_crypto_posture(vehicle: Vehicle) -> CryptoPosture:
    config = None
    try:
        from pqc.catalogue import load_catalogue

        config = next(
            (
                c
                for c in load_catalogue()
                if c.group == vehicle.tls_group
                and c.signature_algorithm == vehicle.tls_signature_algorithm
            ),
            None,
        )
    except Exception:
        logger.info("PQC catalogue unavailable", exc_info=True)
    certificate = None
    if vehicle.certificate_serial or vehicle.certificate_fingerprint:
        wanted_serial = vehicle.certificate_serial.lower().lstrip("0")
        for cert in certificate_inventory():
            if (
                vehicle.certificate_fingerprint
                and cert.fingerprint.lower() == vehicle.certificate_fingerprint.lower()
            ) or (wanted_serial and cert.serial.lower().lstrip("0") == wanted_serial):
                certificate = cert
                break
    return CryptoPosture(
        group=vehicle.tls_group,
        signature_algorithm=vehicle.tls_signature_algorithm,
        version=vehicle.tls_version,
        seen_at=vehicle.tls_seen_at,
        configuration=config,
        certificate=certificate,
    )


# Status reports on the vehicle page; the API pages through all of them.
UPDATE_LOG_LIMIT = 50


def vehicle_detail(vehicle: Vehicle) -> dict[str, Any]:
    telemetry = latest_telemetry(vehicle)
    return {
        "vehicle": vehicle,
        "zones": ecus_by_zone(vehicle),
        "updates": vehicle_updates(vehicle),
        "update_log": list(vehicle_update_log(vehicle)[:UPDATE_LOG_LIMIT]),
        "update_log_limit": UPDATE_LOG_LIMIT,
        "telemetry": telemetry,
        "posture": vehicle_crypto_posture(vehicle),
        "audit": audit_trail(vehicle_vin=vehicle.vin),
    }


# -- PQC --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigurationUsage:
    configuration: Any
    vehicles: int
    percent: float
    is_default: bool
    handshake: dict[str, Any] | None = None


# Benchmark columns the configuration table shows, by their heading in the report.
HANDSHAKE_RECORD = Path("bench") / "results" / "tls.json"


def recorded_handshakes() -> dict[str, Any]:
    """The last TLS benchmark's figures, as `bench/tls_handshake.py` recorded them."""
    path = Path(settings.BASE_DIR) / HANDSHAKE_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        rows = [
            {
                "id": int(row["id"]),
                "configuration": str(row["configuration"]),
                "server_cpu_ms": float(row["server_cpu_ms"]),
                "rate": int(row["handshakes_per_second_per_core"]),
                "vs_classical": row.get("vs_classical"),
                "p50_ms": float(row["p50_ms"]),
                "bytes": int(row["bytes_client_to_server"]) + int(row["bytes_server_to_client"]),
            }
            for row in record["configurations"]
        ]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError):
        logger.warning("unreadable handshake record %s", HANDSHAKE_RECORD, exc_info=True)
        return {}
    slowest = max((row["p50_ms"] for row in rows), default=0.0)
    for row in rows:
        row["bar"] = round(100.0 * row["p50_ms"] / slowest, 1) if slowest else 0.0
    return {
        "source": str(HANDSHAKE_RECORD),
        "command": str(record.get("command", "")),
        "date": str(record.get("date", "")),
        "rows": rows,
    }


def pqc_overview() -> dict[str, Any]:
    """The catalogue, how many vehicles last connected with each entry, and benchmark figures."""
    try:
        from pqc.catalogue import load_catalogue

        catalogue = list(load_catalogue())
    except Exception:
        logger.info("PQC catalogue unavailable", exc_info=True)
        catalogue = []
    usage = {
        (row["tls_group"], row["tls_signature_algorithm"]): row["n"]
        for row in Vehicle.objects.exclude(tls_group="")
        .values("tls_group", "tls_signature_algorithm")
        .annotate(n=Count("id"))
    }
    connected = sum(usage.values())
    benchmark = recorded_handshakes()
    figures = {row["id"]: row for row in benchmark.get("rows", [])}
    rows = []
    matched: set[tuple[str, str]] = set()
    for config in catalogue:
        key = (config.group, config.signature_algorithm)
        matched.add(key)
        n = usage.get(key, 0)
        rows.append(
            ConfigurationUsage(
                configuration=config,
                vehicles=n,
                percent=round(100.0 * n / connected, 1) if connected else 0.0,
                is_default=config.id == settings.PQC_DEFAULT_CONFIG,
                handshake=figures.get(config.id),
            )
        )
    unknown = [
        {"group": group, "signature_algorithm": sig, "vehicles": n}
        for (group, sig), n in sorted(usage.items())
        if (group, sig) not in matched
    ]
    return {
        "configurations": rows,
        "unlisted": unknown,
        "connected": connected,
        "never_connected": Vehicle.objects.filter(tls_group="").count(),
        "benchmark": benchmark,
        "has_handshakes": bool(figures),
        "certificates": certificate_inventory()[:50],
        "allow_classical": settings.PQC_ALLOW_CLASSICAL,
    }


# -- diagnostics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UdsService:
    sid: int
    name: str
    parameter: str
    default: str
    help: str

    @property
    def sid_hex(self) -> str:
        return f"{self.sid:02X}"


# The services the console offers; `default` is the parameter bytes the form starts with.
UDS_SERVICES: tuple[UdsService, ...] = (
    UdsService(
        0x22,
        "ReadDataByIdentifier",
        "DID (2 bytes)",
        "F190",
        "F190 VIN, F194 software, F195 zone VCI, F1A0 zone health",
    ),
    UdsService(
        0x19,
        "ReadDTCInformation",
        "sub-function + mask",
        "02FF",
        "02FF: every DTC matching status mask FF",
    ),
    UdsService(
        0x10, "DiagnosticSessionControl", "session", "03", "01 default, 02 programming, 03 extended"
    ),
    UdsService(0x3E, "TesterPresent", "sub-function", "00", "keeps a non-default session open"),
    UdsService(0x11, "ECUReset", "reset type", "01", "01 hard, 03 soft reset"),
    UdsService(
        0x14,
        "ClearDiagnosticInformation",
        "group of DTC (3 bytes)",
        "FFFFFF",
        "FFFFFF clears every group",
    ),
    UdsService(
        0x31,
        "RoutineControl",
        "type + routine id",
        "01F003",
        "01F001 collect VCI, 01F003 readiness check",
    ),
    UdsService(0x27, "SecurityAccess", "level", "01", "01 requests a seed"),
    UdsService(
        0x2E, "WriteDataByIdentifier", "DID + data", "F19001", "changes the ECU: operators only"
    ),
)


def uds_service(sid: int) -> UdsService | None:
    return next((s for s in UDS_SERVICES if s.sid == sid), None)


def spaced_hex(text: str) -> str:
    return " ".join(text[i : i + 2] for i in range(0, len(text), 2)).upper()


def _describe_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and key in _HEX_KEYS:
        return f"0x{value:04X}"
    if isinstance(value, dict):
        return _describe_decoded(value)
    if isinstance(value, list):
        shown = [_describe_value(key, item) for item in value[:8]]
        return ", ".join(shown) + (" …" if len(value) > 8 else "")
    return str(value)


# Decoded fields that read better as hex identifiers than as decimal numbers.
_HEX_KEYS = {"did", "dids", "routine_id", "group", "dtc", "status_mask", "session", "reset_type"}


def _describe_decoded(decoded: dict[str, Any]) -> str:
    """A short reading of a decoded UDS answer: the service name is already on the page, and
    printable text makes the raw data bytes redundant."""
    items = {k: v for k, v in decoded.items() if k != "service"}
    if "text" in items:
        items.pop("data_hex", None)
    return "; ".join(
        f"{key.replace('_', ' ')}: {_describe_value(key, value)}" for key, value in items.items()
    )


def _meaning(result: Any) -> str:
    if result.nrc_name:
        if result.nrc is not None:
            return f"NRC 0x{result.nrc:02X} {result.nrc_name}"
        return result.nrc_name
    decoded = result.decoded if isinstance(result.decoded, dict) else {}
    return _describe_decoded(decoded)


def diagnostic_answers(request_obj: Any) -> list[dict[str, Any]]:
    """Per-ECU answers of one diagnostic request, ready to show."""
    results = getattr(request_obj, "results", None)
    if results is None:
        return []
    return [
        {
            "ecu_id": result.ecu.ecu_id,
            "ecu_type": result.ecu.ecu_type.code,
            "outcome": result.outcome,
            "outcome_label": result.get_outcome_display(),
            "response_hex": spaced_hex(result.response_hex or ""),
            "meaning": _meaning(result),
            "received_at": result.received_at,
        }
        for result in results.select_related("ecu__ecu_type").order_by("ecu__ecu_id")
    ]


def diagnostic_target(request_obj: Any) -> str:
    gateway = getattr(request_obj, "zonal_gateway", None)
    if gateway is not None:
        return f"every ECU of {gateway.gateway_id}"
    results = getattr(request_obj, "results", None)
    first = results.select_related("ecu").first() if results is not None else None
    return first.ecu.ecu_id if first is not None else ""


def uds_params_from_bytes(sid: int, data: bytes) -> dict[str, Any]:
    """The parameters the diagnostics service expects, read from the bytes after the SID.

    The console lets an operator type raw bytes (what goes on the wire); the diagnostics
    service takes named parameters and re-encodes them, so the preview and the sent request match.
    """

    def need(n: int, what: str) -> None:
        if len(data) < n:
            raise DomainError(
                f"{what} needs at least {n} byte(s) after the service id", field="parameters"
            )

    if sid == 0x22:
        if not data or len(data) % 2:
            raise DomainError(
                "ReadDataByIdentifier takes whole 2-byte DIDs, such as F190", field="parameters"
            )
        return {"dids": [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]}
    if sid == 0x19:
        need(1, "ReadDTCInformation")
        params: dict[str, Any] = {"subfunction": data[0]}
        if len(data) > 1:
            params["status_mask"] = data[1]
        return params
    if sid == 0x10:
        need(1, "DiagnosticSessionControl")
        return {"session": data[0]}
    if sid == 0x11:
        need(1, "ECUReset")
        return {"reset_type": data[0]}
    if sid == 0x14:
        return {"group": int.from_bytes(data, "big")} if data else {}
    if sid == 0x27:
        need(1, "SecurityAccess")
        return (
            {"level": data[0], "key_hex": data[1:].hex()} if len(data) > 1 else {"level": data[0]}
        )
    if sid == 0x2E:
        need(3, "WriteDataByIdentifier")
        return {"did": int.from_bytes(data[:2], "big"), "data_hex": data[2:].hex()}
    if sid == 0x31:
        need(3, "RoutineControl")
        return {
            "control_type": data[0],
            "routine_id": int.from_bytes(data[1:3], "big"),
            "data_hex": data[3:].hex(),
        }
    return {}


def recent_diagnostic_requests(*, vehicle: Vehicle | None = None, limit: int = 10) -> list[Any]:
    queryset = DiagnosticRequest.objects.select_related("vehicle").order_by("-created_at")
    if vehicle is not None:
        queryset = queryset.filter(vehicle=vehicle)
    return list(queryset[:limit])


# -- fleet list and version report ------------------------------------------------------------

# Query parameters of the console's fleet list besides the filters: paging and a saved filter.
FLEET_PAGE_PARAMETERS = ("cursor", "ordering", "limit", "saved")
FLEET_ORDERING = ("vin", "model_name", "model_year", "status", "created_at")
MODEL_COLOURS = ["#1e63b6", "#1f7a4d", "#b35c00", "#6b4fa3", "#a3324a", "#4d6b7a"]


@dataclass
class FleetPage:
    """One page of the filtered fleet list, or the error that stopped it."""

    vehicles: list[Vehicle]
    total: int
    query: dict[str, str]
    saved: SavedFilter | None = None
    next_query: str = ""
    previous_query: str = ""
    error: str = ""
    # False when counting stopped at the list's limit: more than `total` vehicles match.
    total_exact: bool = True


@dataclass
class _FleetListing:
    query: dict[str, Any]
    ordering_fields: tuple[str, ...] = FLEET_ORDERING
    default_ordering: str = "vin"

    def get_count_limit(self, request: Any) -> int | None:
        return count_limit(self.query)


def fleet_page(request: HttpRequest, *, page_size: int = 50) -> FleetPage:
    """The fleet list with the API's filters and keyset pages, as the console shows it."""
    params = {k: v for k, v in request.GET.items() if k != "fragment" and v != ""}
    paging = {k: params.pop(k) for k in FLEET_PAGE_PARAMETERS if k in params}
    saved = None
    if paging.get("saved", "").isdigit():
        saved = SavedFilter.objects.filter(pk=int(paging["saved"])).first()
    query = {**(saved.query if saved else {}), **params}
    page = FleetPage(vehicles=[], total=0, query=params, saved=saved)
    pagination = KeysetPagination()
    pagination.page_size = page_size
    try:
        vehicles = filter_vehicles(query, Vehicle.objects.for_list())
        rows = pagination.paginate_queryset(vehicles, Request(request), _FleetListing(query))
    except DomainError as exc:
        page.error = exc.message
        return page
    except ValidationError as exc:
        page.error = "; ".join(
            f"{name}: {' '.join(map(str, errors))}" for name, errors in exc.detail.items()
        )
        return page
    page.vehicles, page.total = rows or [], pagination.count
    page.total_exact = pagination.count_exact
    kept = {**params, **{k: v for k, v in paging.items() if k in ("ordering", "saved", "limit")}}
    if pagination.next_cursor:
        page.next_query = urlencode({**kept, "cursor": pagination.next_cursor})
    if pagination.previous_cursor:
        page.previous_query = urlencode({**kept, "cursor": pagination.previous_cursor})
    return page


def saved_filters() -> list[SavedFilter]:
    return list(SavedFilter.objects.order_by("name"))


@dataclass(frozen=True)
class VersionBar:
    version: str
    count: int
    y: int
    segments: list[ChartSegment]


def version_chart(ecu_code: str, *, row_height: int = 22) -> dict[str, Any]:
    """The fleet-wide version report of one ECU type, as bars per version split by model."""
    ecu_type = EcuType.objects.filter(code=ecu_code).first()
    if ecu_type is None:
        return {"ecu": ecu_code, "report": None, "bars": [], "legend": []}
    report = version_report(ecu_type)
    colours = {
        model: MODEL_COLOURS[index % len(MODEL_COLOURS)]
        for index, model in enumerate(report.models)
    }
    widest = max((row.count for row in report.versions), default=0) or 1
    bars = []
    for index, row in enumerate(report.versions):
        x, segments = 0.0, []
        for model in report.models:
            count = row.by_model.get(model, 0)
            if not count:
                continue
            width = 100.0 * count / widest
            segments.append(
                ChartSegment(
                    label=model,
                    count=count,
                    x=round(x, 3),
                    width=round(width, 3),
                    colour=colours[model],
                )
            )
            x += width
        bars.append(
            VersionBar(
                version=row.version, count=row.count, y=index * row_height, segments=segments
            )
        )
    return {
        "ecu": ecu_type.code,
        "report": report,
        "bars": bars,
        "height": len(bars) * row_height,
        "legend": list(colours.items()),
    }


def ecu_type_codes() -> list[str]:
    return list(EcuType.objects.order_by("code").values_list("code", flat=True))
