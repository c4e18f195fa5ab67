from __future__ import annotations

import io

import paho.mqtt.client as mqtt
from django.core.management import call_command

from core.mqtt import topics
from core.mqtt.bridge import BridgeOptions, MqttBridge
from core.mqtt.connection import broker_address


def test_refuses_external_workers_with_an_in_memory_channel_layer():
    err = io.StringIO()
    call_command("mqtt_bridge", "--no-worker", stderr=err)
    assert "REDIS_URL" in err.getvalue()


def test_uses_shared_subscriptions_and_mqtt5_on_a_real_broker(settings):
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    bridge = MqttBridge(BridgeOptions(client_id="unit"))
    assert bridge.shared is True
    assert bridge.address.protocol == mqtt.MQTTv5
    assert topics.subscription_filters(shared=True)[0] == "$share/ota-bridge/vehicle/+/telemetry"


def test_falls_back_to_plain_subscriptions_on_the_embedded_broker(settings):
    settings.MQTT_URL = None
    assert broker_address().embedded
    bridge = MqttBridge(BridgeOptions(client_id="unit", shared=True))
    assert bridge.shared is False
    assert bridge.address.protocol == mqtt.MQTTv311
