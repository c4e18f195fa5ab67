"""Fleet-wide metrics read from the database at each scrape, and the /metrics view.

They sit here, above every app, because they read several apps' tables; core.metrics holds
the per-process counters and the exposition they join.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from prometheus_client.core import GaugeMetricFamily, Metric
from rest_framework.decorators import api_view, permission_classes, renderer_classes
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from core import metrics
from core.permissions import IsOperator
from diagnostics.choices import DiagnosticStatus
from diagnostics.models import DiagnosticRequest, InboundDrop
from ota.choices import CampaignStatus, UpdateState
from ota.models import Campaign, OtaUpdate
from vehicles.models import Vehicle
from webhooks.choices import DeliveryStatus
from webhooks.models import WebhookDelivery

FINISHED_STATES = (
    UpdateState.SUCCEEDED,
    UpdateState.FAILED,
    UpdateState.ROLLED_BACK,
    UpdateState.CANCELLED,
)
FAILED_STATES = (UpdateState.FAILED, UpdateState.ROLLED_BACK)
ACTIVE_STATES = (
    UpdateState.OFFERED,
    UpdateState.DOWNLOADING,
    UpdateState.DOWNLOADED,
    UpdateState.VERIFYING,
    UpdateState.INSTALLING,
    UpdateState.AWAITING_REBOOT,
)
# Diagnostics round trips are summarised over this recent window, not the whole history.
DIAGNOSTICS_WINDOW = timedelta(minutes=15)


def connected_vehicles() -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "ota_vehicles_connected",
        "Vehicles online, by the configuration of their latest mutual-TLS connection.",
        labels=["group", "signature_algorithm"],
    )
    rows = (
        Vehicle.objects.filter(is_online=True)
        .values("tls_group", "tls_signature_algorithm")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        family.add_metric([row["tls_group"], row["tls_signature_algorithm"]], row["n"])
    yield family


def campaign_progress() -> Iterable[Metric]:
    updates = GaugeMetricFamily(
        "ota_campaign_updates",
        "Update records of running and paused campaigns, by state.",
        labels=["campaign", "state"],
    )
    progress = GaugeMetricFamily(
        "ota_campaign_progress_ratio",
        "Share of a campaign's update records that reached an outcome.",
        labels=["campaign"],
    )
    failure = GaugeMetricFamily(
        "ota_campaign_failure_ratio",
        "Share of a campaign's finished update records that failed or rolled back.",
        labels=["campaign"],
    )
    live = Campaign.objects.filter(status__in=[CampaignStatus.RUNNING, CampaignStatus.PAUSED])
    counts: dict[int, dict[str, int]] = {}
    rows = (
        OtaUpdate.objects.filter(campaign__in=live)
        .values("campaign_id", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in rows:
        counts.setdefault(row["campaign_id"], {})[row["state"]] = row["n"]
    for campaign_id, by_state in sorted(counts.items()):
        label = str(campaign_id)
        for state, n in sorted(by_state.items()):
            updates.add_metric([label, state], n)
        total = sum(by_state.values())
        finished = sum(by_state.get(s, 0) for s in FINISHED_STATES)
        failed = sum(by_state.get(s, 0) for s in FAILED_STATES)
        progress.add_metric([label], finished / total if total else 0.0)
        failure.add_metric([label], failed / finished if finished else 0.0)
    yield from (updates, progress, failure)


def mqtt_drops() -> Iterable[Metric]:
    # The bridge keeps these counts in the database (InboundDrop), summed over every bridge.
    family = GaugeMetricFamily(
        "ota_mqtt_messages_dropped",
        "Inbound MQTT messages dropped since the counts began, by reason.",
        labels=["reason"],
    )
    for reason, count in InboundDrop.objects.values_list("reason", "count"):
        family.add_metric([reason], count)
    yield family


def diagnostics_round_trip() -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "ota_diagnostics_round_trip_seconds",
        "Time from a diagnostic request to its completion, over the last 15 minutes.",
        labels=["stat"],
    )
    since = timezone.now() - DIAGNOSTICS_WINDOW
    durations = (
        DiagnosticRequest.objects.filter(
            status__in=[DiagnosticStatus.COMPLETED, DiagnosticStatus.PARTIAL],
            completed_at__gte=since,
        )
        .annotate(
            took=ExpressionWrapper(
                F("completed_at") - F("created_at"), output_field=DurationField()
            )
        )
        .values_list("took", flat=True)
    )
    seconds = sorted(d.total_seconds() for d in durations if d is not None)
    family.add_metric(["count"], len(seconds))
    if seconds:
        family.add_metric(["mean"], sum(seconds) / len(seconds))
        family.add_metric(["median"], seconds[len(seconds) // 2])
        family.add_metric(["max"], seconds[-1])
    yield family


def worker_lag() -> Iterable[Metric]:
    """How long the oldest piece of work the campaign worker should have done has waited."""
    now = timezone.now()
    oldest = [
        Campaign.objects.filter(status=CampaignStatus.SCHEDULED, start_at__lte=now).aggregate(
            t=Min("start_at")
        )["t"],
        OtaUpdate.objects.filter(state__in=ACTIVE_STATES, deadline_at__lte=now).aggregate(
            t=Min("deadline_at")
        )["t"],
        # Offers due in a running campaign's reached waves (as ota.engine picks them).
        OtaUpdate.objects.filter(
            campaign__status=CampaignStatus.RUNNING,
            wave__index__lte=F("campaign__current_wave"),
            next_action_at__lte=now,
            state__in=[UpdateState.QUEUED, UpdateState.FAILED, UpdateState.ROLLED_BACK],
        ).aggregate(t=Min("next_action_at"))["t"],
    ]
    due = [t for t in oldest if t is not None]
    lag = (now - min(due)).total_seconds() if due else 0.0
    yield GaugeMetricFamily(
        "ota_worker_lag_seconds",
        "Age of the oldest campaign-worker task already due (0 when none is).",
        value=lag,
    )


def webhook_backlog() -> Iterable[Metric]:
    deliveries = GaugeMetricFamily(
        "ota_webhook_deliveries", "Webhook deliveries by status.", labels=["status"]
    )
    rows = WebhookDelivery.objects.values("status").annotate(n=Count("pk")).order_by()
    for row in rows:
        deliveries.add_metric([row["status"]], row["n"])
    yield deliveries
    now = timezone.now()
    oldest = WebhookDelivery.objects.filter(
        status=DeliveryStatus.PENDING, next_attempt_at__lte=now
    ).aggregate(t=Min("created_at"))["t"]
    yield GaugeMetricFamily(
        "ota_webhook_oldest_due_seconds",
        "Age of the oldest webhook delivery that is due and not yet delivered (0 when none).",
        value=(now - oldest).total_seconds() if oldest else 0.0,
    )


def fleet_state() -> Iterable[Metric]:
    for collect in (
        connected_vehicles,
        campaign_progress,
        mqtt_drops,
        diagnostics_round_trip,
        worker_lag,
        webhook_backlog,
    ):
        yield from collect()


metrics.register_state_collector(fleet_state)


# Prometheus text, not part of the JSON API the schema describes (see docs/DEPLOYMENT.md).
@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([IsOperator])
@renderer_classes([JSONRenderer])
def metrics_view(request: Request) -> HttpResponse:
    """Prometheus exposition, for operators (staff session or operator token) only."""
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
