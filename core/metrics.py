"""Prometheus metrics: what each process counts, and the exposition for operators.

Two kinds of figures, aggregated across processes in two ways:

- Events a process sees (TLS handshakes, MQTT messages, package bytes, update-check latency)
  are prometheus_client counters and histograms. With PROMETHEUS_MULTIPROC_DIR set (one
  directory per host, emptied before the processes start), every process writes its values to
  files there and any process's exposition sums them; several hosts are summed by Prometheus.
- Fleet state (vehicles connected, campaign progress, drops by reason, diagnostics round
  trips, worker lag) lives in the database and is read at scrape time by the collectors
  registered with `register_state_collector`, so every process reports the same fleet-wide
  figures without sharing memory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

TLS_HANDSHAKES = Counter(
    "ota_tls_handshakes_total",
    "Finished mutual-TLS handshakes, by listener and negotiated configuration.",
    ["listener", "group", "signature_algorithm"],
)
TLS_HANDSHAKE_FAILURES = Counter(
    "ota_tls_handshake_failures_total",
    "Connections closed before their TLS handshake finished (nothing was negotiated yet, so "
    "they are counted by listener).",
    ["listener"],
)
MQTT_MESSAGES = Counter(
    "ota_mqtt_messages_total",
    "MQTT messages the bridge received (in) and the server published (out).",
    ["direction"],
)
MQTT_IN = MQTT_MESSAGES.labels("in")
MQTT_OUT = MQTT_MESSAGES.labels("out")
PACKAGE_BYTES_SERVED = Counter(
    "ota_package_bytes_served_total", "Bytes of update packages that reached vehicles."
)
UPDATE_CHECK_SECONDS = Histogram(
    "ota_update_check_seconds",
    "Time to answer a vehicle's update check, from request to response.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# The route whose latency UPDATE_CHECK_SECONDS measures (see otaproject/urls.py).
UPDATE_CHECK_VIEW = "ota-api:ota-check"

StateCollector = Callable[[], Iterable[Metric]]
_state_collectors: list[StateCollector] = []


def register_state_collector(collector: StateCollector) -> None:
    """Add a function yielding metric families read from shared state at each scrape."""
    if collector not in _state_collectors:
        _state_collectors.append(collector)


class _StateCollectors(Collector):
    def __init__(self, *, own_thread: bool = False) -> None:
        self.own_thread = own_thread

    def collect(self) -> Iterable[Metric]:
        if self.own_thread:
            # The loopback server's thread keeps its connection between scrapes, as a request
            # thread would: drop it when it broke or grew too old.
            close_old_connections()
        for collector in list(_state_collectors):
            try:
                yield from collector()
            except Exception:
                # One unreadable figure (say the database is down) must not hide the others.
                logger.exception("metrics collector %s failed", collector.__name__)

    def describe(self) -> Iterable[Metric]:
        # Describing would query the database at registration time.
        return []


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def scrape_registry(*, own_thread: bool = False) -> CollectorRegistry:
    """The registry one scrape reads: this process's metrics, or every process's from the
    multiprocess directory, plus the fleet state."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_DefaultRegistry())
    registry.register(_StateCollectors(own_thread=own_thread))
    return registry


class _DefaultRegistry(Collector):
    """The process-wide default registry, seen through a scrape registry of its own."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()

    def describe(self) -> Iterable[Metric]:
        return []


def exposition() -> tuple[bytes, str]:
    return generate_latest(scrape_registry()), CONTENT_TYPE_LATEST


class UpdateCheckTimer:
    """Middleware observing UPDATE_CHECK_SECONDS for the update-check route only."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name == UPDATE_CHECK_VIEW:
            UPDATE_CHECK_SECONDS.observe(time.perf_counter() - started)
        return response


def serve_on_loopback(port: int) -> Any:
    """Serve the exposition on 127.0.0.1:`port` (OTA_METRICS_PORT), apart from the listeners.

    Returns the server (call shutdown() to stop it); a port of 0 picks a free one.
    """
    from prometheus_client.exposition import start_http_server

    server, _thread = start_http_server(
        port, addr="127.0.0.1", registry=scrape_registry(own_thread=True)
    )
    return server
