"""The Channels worker side of the bridge (`manage.py runworker mqtt-inbound`)."""

from __future__ import annotations

from typing import Any

from channels.consumer import SyncConsumer

from telematics.ingest import handle_batch_through_outage


class MqttInboundConsumer(SyncConsumer):
    """Handles the batches the bridge puts on the "mqtt-inbound" channel."""

    def mqtt_batch(self, message: dict[str, Any]) -> None:
        handle_batch_through_outage(
            [(topic, bytes(payload)) for topic, payload in message["messages"]]
        )


# Mounted in otaproject/asgi.py as the "channel" protocol, for `manage.py runworker mqtt-inbound`.
CHANNEL_ROUTES = {"mqtt-inbound": MqttInboundConsumer.as_asgi()}
