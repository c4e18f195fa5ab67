from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection
from django.utils.module_loading import import_string
from twisted.internet.error import CannotListenError

import pqc.server
from core import health
from core.mqtt.connection import ClientIdInUse, claim_bridge_client_id
from pqc.catalogue import CatalogueError
from pqc.pki import FleetPki, PkiError
from pqc.tls import TlsConfigError
from vehicles.identity import certificate_speaks_for, record_tls_session_from_listener


def _id_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--configs: {text!r} is not a comma-separated list of ids") from None


def _check_database() -> None:
    """Fail in seconds with one line, rather than serve while every request waits for the pool."""
    # The pool logs a warning for each retry within its timeout; the one line below says it all.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        connection.ensure_connection()
    except OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        db = settings.DATABASES["default"]
        where = (
            db["NAME"]
            if not db.get("HOST")
            else f"{db['NAME']} at {db['HOST']}:{db.get('PORT') or 5432}"
        )
        raise CommandError(f"database {where} is unreachable: {reason} (check DATABASE_URL)")
    finally:
        pool_log.setLevel(level)
        # The listeners' threads open their own connections.
        connection.close()


# A vehicle on the MQTT front holds two descriptors: its TLS connection and the front's broker
# connection. The rest of the process (database pool, log files, the bridge, listeners) needs
# a few hundred at most.
DESCRIPTORS_PER_VEHICLE = 2
RESERVED_DESCRIPTORS = 300


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one; the limit and the vehicles it holds.

    A service manager's usual soft limit (1024) would cap the process at about 360 vehicles
    while its hard limit allows far more.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError):
            pass  # the limit stays; the caller says what it holds
    return soft, max(soft - RESERVED_DESCRIPTORS, 0) // DESCRIPTORS_PER_VEHICLE


# After a stop (SIGTERM, SIGINT, a service given up) work in progress gets this long to finish.
SHUTDOWN_GRACE_SECONDS = 10


def _exit_if_stuck() -> None:
    """Make sure the process ends after a stop, however its threads are doing.

    A database or broker that stops answering leaves calls waiting with no timeout, and Python
    joins thread-pool threads at exit: without this the process would never end. A daemon
    thread outlives that join, and ends the process in one line when the grace is over.
    """

    def watch() -> None:
        time.sleep(SHUTDOWN_GRACE_SECONDS)
        sys.stdout.flush()
        sys.stderr.write(
            f"runota: work in progress did not finish within {SHUTDOWN_GRACE_SECONDS} s of the "
            "stop (database or broker not answering?); exiting anyway\n"
        )
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=watch, name="runota-shutdown-watchdog", daemon=True).start()


def _check_bridge_client_id() -> None:
    """A second bridge with the first one's client id would take its broker session over."""
    try:
        claim_bridge_client_id().release()
    except ClientIdInUse as exc:
        raise CommandError(
            f"{exc} (another server running? set MQTT_BRIDGE_CLIENT_ID to an id of its own)"
        ) from None


def _check_port_free(port: int, setting: str) -> None:
    """A loopback port a background service will listen on, checked before anything is announced."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise CommandError(
                f"cannot listen on 127.0.0.1:{port} ({setting}): {reason} "
                "(another server running? choose another port)"
            ) from None


def _check_default_configuration(policy: Any) -> None:
    accepted = [config.id for config in policy.configurations]
    if settings.PQC_DEFAULT_CONFIG not in accepted:
        raise CommandError(
            f"PQC_DEFAULT_CONFIG={settings.PQC_DEFAULT_CONFIG} is not an accepted configuration; "
            f"choose one of {', '.join(map(str, accepted))}"
        )


# The parts of the server one process may run (`--role`); all of them by default.
ROLES = ("vehicle-api", "console", "mqtt-front", "bridge", "worker")
TLS_ROLES = {"vehicle-api": "vehicle", "console": "console", "mqtt-front": "mqtt"}
# Background services of the bridge role; any other in RUNOTA_BACKGROUND_SERVICES is a worker's.
BRIDGE_SERVICES = {"core.mqtt.broker.start", "telematics.bridge.start"}


def _role_list(text: str) -> list[str]:
    roles = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise CommandError(
            f"--role: {', '.join(unknown) or 'nothing'} is not a role; "
            f"choose from {','.join(ROLES)}"
        )
    return roles


def role_of_service(dotted: str) -> str:
    return "bridge" if dotted in BRIDGE_SERVICES else "worker"


class Command(BaseCommand):
    help = (
        "Serve the vehicle API (mutual PQC-TLS), the operator console (PQC-TLS) and the MQTT "
        "TLS front in one process, plus the background services in RUNOTA_BACKGROUND_SERVICES."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=None, help="Bind address (default OTA_BIND_HOST).")
        parser.add_argument("--vehicle-port", type=int, default=None)
        parser.add_argument("--console-port", type=int, default=None)
        parser.add_argument("--mqtt-port", type=int, default=None)
        parser.add_argument("--no-mqtt", action="store_true", help="Do not start the MQTT front.")
        parser.add_argument(
            "--role",
            default=",".join(ROLES),
            help=f"Comma-separated parts to run (default all): {','.join(ROLES)}.",
        )
        parser.add_argument("--configs", type=_id_list, default=None,
                            help="Accept only these configuration ids, e.g. 1,4,13.")  # fmt: skip
        parser.add_argument("--allow-classical", action="store_true", default=None,
                            help="Also accept X25519 + ECDSA-P256 (PQC_ALLOW_CLASSICAL).")  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        from daphne.access import AccessLogGenerator

        from otaproject.asgi import application

        _check_database()
        roles = _role_list(options["role"])
        services = self._import_background_services(roles)
        if "core.mqtt.broker.start" in services and not settings.MQTT_URL:
            _check_port_free(settings.MQTT_EMBEDDED_PORT, "MQTT_EMBEDDED_PORT")
        if settings.OTA_METRICS_PORT:
            _check_port_free(settings.OTA_METRICS_PORT, "OTA_METRICS_PORT")
        if "telematics.bridge.start" in services:
            _check_bridge_client_id()
        listeners_wanted = [TLS_ROLES[role] for role in roles if role in TLS_ROLES]
        pki = FleetPki.from_settings()
        if listeners_wanted and not pki.server_families():
            raise CommandError("no server certificates: run `manage.py pqc_pki init` first")
        try:
            listeners = pqc.server.listeners_from_settings(
                application=application,
                pki=pki,
                host=options["host"],
                vehicle_port=options["vehicle_port"],
                console_port=options["console_port"],
                mqtt_port=options["mqtt_port"],
                with_mqtt="mqtt-front" in roles and not options["no_mqtt"],
                accept=options["configs"],
                allow_classical=options["allow_classical"],
                action_logger=AccessLogGenerator(sys.stdout) if options["verbosity"] > 1 else None,
                on_vehicle_handshake=pqc.server.recording_sessions(
                    record_tls_session_from_listener
                ),
                mqtt_certificate_binding=certificate_speaks_for,
            )
            _check_default_configuration(listeners.vehicle.policy)
            listeners.http_listeners = tuple(
                name for name in listeners_wanted if name in ("vehicle", "console")
            )
            listeners.reuse_port = settings.OTA_REUSE_PORT
            ports = listeners.listen() if listeners_wanted else {}
        except (CatalogueError, PkiError, TlsConfigError) as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"cannot listen: {exc}") from None
        except CannotListenError as exc:
            error = exc.socketError
            reason = getattr(error, "strerror", None) or str(error or "refused")
            hint = (
                "another server running? choose another port"
                if getattr(error, "errno", None) == errno.EADDRINUSE
                else "check OTA_BIND_HOST or --host"
            )
            raise CommandError(
                f"cannot listen on {exc.interface}:{exc.port}: {reason.lower()} ({hint})"
            ) from None
        self._announce(listeners, ports)
        if "mqtt" in ports:
            self._announce_open_files(*raise_open_files_limit())
        stop = threading.Event()
        reactor = pqc.server.reactor
        given_up: list[str] = []

        def give_up(name: str) -> None:
            # Serving HTTPS while vehicle messages go unprocessed is worse than stopping:
            # a process supervisor restarts the whole server.
            given_up.append(name)
            reactor.callFromThread(reactor.stop)

        self._start_background_services(stop, give_up, services)
        if settings.OTA_METRICS_PORT:
            import otaproject.metrics  # noqa: F401 (registers the fleet figures)
            from core import metrics

            try:
                metrics.serve_on_loopback(settings.OTA_METRICS_PORT)
            except OSError as exc:
                raise CommandError(f"OTA_METRICS_PORT={settings.OTA_METRICS_PORT}: {exc}") from None
            self.stdout.write(
                f"metrics        http://127.0.0.1:{settings.OTA_METRICS_PORT}/metrics"
            )
        reactor.addSystemEventTrigger("before", "shutdown", stop.set)
        reactor.addSystemEventTrigger("before", "shutdown", _exit_if_stuck)
        asyncio.set_event_loop(reactor._asyncioEventloop)
        reactor.run(installSignalHandlers=True)
        if given_up:
            raise CommandError(
                f"background service {', '.join(given_up)} failed "
                f"{settings.RUNOTA_SERVICE_MAX_RESTARTS + 1} times in a row; stopping"
            )

    def _announce(self, listeners: pqc.server.OtaListeners, ports: dict[str, int]) -> None:
        host = listeners.host
        policy = listeners.vehicle.policy
        if "vehicle" in ports:
            self.stdout.write(
                f"vehicle API    https://{host}:{ports['vehicle']}  (client certificate required)"
            )
        if "console" in ports:
            self.stdout.write(
                f"console/admin  https://{host}:{ports['console']}  (server certificate only)"
            )
        if "mqtt" in ports:
            host_port = listeners.mqtt_upstream or ("?", 0)
            upstream = f"{host_port[0]}:{host_port[1]}"
            self.stdout.write(
                f"MQTT TLS front mqtts://{host}:{ports['mqtt']}  (client certificate required) "
                f"-> broker {upstream}"
            )
        self.stdout.write("accepted configurations, most preferred first:")
        for config in policy.configurations:
            self.stdout.write(
                f"  {config.id:>2}  {config.name:<34} {config.group}/{config.signature_algorithm}"
            )
        self.stdout.write(f"groups offered: {':'.join(policy.groups)}")

    def _announce_open_files(self, limit: int, vehicles: int) -> None:
        self.stdout.write(f"open files     {limit} (about {vehicles} vehicles on the MQTT front)")
        if vehicles < settings.OTA_MAX_CONNECTIONS:
            self.stderr.write(
                f"warning: the open-files limit {limit} holds about {vehicles} vehicles, fewer "
                f"than OTA_MAX_CONNECTIONS={settings.OTA_MAX_CONNECTIONS}; raise the hard limit "
                "(systemd LimitNOFILE=, docker --ulimit nofile=) or lower OTA_MAX_CONNECTIONS"
            )

    def _import_background_services(self, roles: list[str]) -> dict[str, Callable[..., Any]]:
        """This process's services, imported before anything is announced."""
        services = {}
        for dotted in settings.RUNOTA_BACKGROUND_SERVICES:
            if role_of_service(dotted) not in roles:
                continue
            try:
                services[dotted] = import_string(dotted)
            except ImportError as exc:
                raise CommandError(
                    f"RUNOTA_BACKGROUND_SERVICES: cannot import {dotted}: {exc}"
                ) from None
        return services

    def _start_background_services(
        self,
        stop: threading.Event,
        give_up: Callable[[str], None],
        services: dict[str, Callable[..., Any]],
    ) -> None:
        for dotted, start in services.items():
            thread = threading.Thread(
                target=health.supervise,
                args=(dotted, start, stop),
                kwargs={
                    "max_restarts": settings.RUNOTA_SERVICE_MAX_RESTARTS,
                    "on_give_up": give_up,
                },
                name=dotted,
                daemon=True,
            )
            thread.start()
            self.stdout.write(f"started {dotted}")
