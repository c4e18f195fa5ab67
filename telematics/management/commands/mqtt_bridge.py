from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.mqtt.connection import ClientIdInUse
from telematics.bridge import BridgeOptions, MqttBridge


class Command(BaseCommand):
    help = (
        "Bridge vehicle MQTT topics to the ingest services (QoS 1, persistent session; shared "
        "subscriptions with MQTT_SHARED_SUBSCRIPTIONS or --shared on MQTT 5 brokers). With a "
        "Redis channel layer, run `manage.py runworker mqtt-inbound` processes and pass "
        "--no-worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--client-id",
            default="",
            help="MQTT client id (default MQTT_BRIDGE_CLIENT_ID, else hostname and a free slot)",
        )
        parser.add_argument(
            "--no-worker", action="store_true", help="only forward; workers run elsewhere"
        )
        parser.add_argument("--batch-size", type=int, default=500)
        sharing = parser.add_mutually_exclusive_group()
        sharing.add_argument(
            "--shared", dest="shared", action="store_true", default=None,
            help="shared subscriptions, to split the stream between several bridges",
        )  # fmt: skip
        sharing.add_argument(
            "--no-shared", dest="shared", action="store_false", help="plain subscriptions"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("telematics").setLevel(logging.INFO)
        logging.getLogger("core.mqtt").setLevel(logging.INFO)
        in_memory = "InMemory" in settings.CHANNEL_LAYERS["default"]["BACKEND"]
        if options["no_worker"] and in_memory:
            self.stderr.write("--no-worker needs a shared channel layer (set REDIS_URL)")
            return
        try:
            bridge = MqttBridge(
                BridgeOptions(
                    client_id=options["client_id"],
                    batch_size=options["batch_size"],
                    run_worker=not options["no_worker"],
                    shared=options["shared"],
                )
            )
        except ClientIdInUse as exc:
            raise CommandError(str(exc)) from None
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        address = bridge.address
        self.stdout.write(
            f"mqtt bridge {bridge.client_id} -> {address.host}:{address.port} "
            f"({'embedded, MQTT 3.1.1' if address.embedded else 'MQTT 5'}), "
            f"shared={bridge.shared}, worker={'in-process' if not options['no_worker'] else 'external'}"
        )
        bridge.run(stop)
        self.stdout.write(
            f"stopped: received={bridge.stats.received} outcomes={dict(bridge.stats.outcomes)}"
        )
