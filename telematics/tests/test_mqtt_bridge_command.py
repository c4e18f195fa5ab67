from __future__ import annotations

import io

import paho.mqtt.client as mqtt
import pytest
from django.core.management import CommandError, call_command

from core.mqtt import topics
from core.mqtt.connection import broker_address
from telematics.bridge import BridgeOptions, MqttBridge


def test_refuses_external_workers_with_an_in_memory_channel_layer():
    err = io.StringIO()
    call_command("mqtt_bridge", "--no-worker", stderr=err)
    assert "REDIS_URL" in err.getvalue()


def test_subscriptions_follow_the_shared_subscriptions_setting(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    settings.MQTT_SHARED_SUBSCRIPTIONS = False
    bridge = MqttBridge(BridgeOptions(client_id="unit-plain"))
    assert bridge.shared is False
    assert bridge.address.protocol == mqtt.MQTTv5
    settings.MQTT_SHARED_SUBSCRIPTIONS = True
    assert MqttBridge(BridgeOptions(client_id="unit-shared")).shared is True
    assert MqttBridge(BridgeOptions(client_id="unit-flag", shared=False)).shared is False
    assert topics.subscription_filters(shared=True)[0] == "$share/ota-bridge/vehicle/+/telemetry"


def test_falls_back_to_plain_subscriptions_on_the_embedded_broker(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.MQTT_URL = None
    assert broker_address().embedded
    bridge = MqttBridge(BridgeOptions(client_id="unit", shared=True))
    assert bridge.shared is False
    assert bridge.address.protocol == mqtt.MQTTv311


def test_refuses_a_client_id_another_bridge_holds(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    held = MqttBridge(BridgeOptions(client_id="ota-bridge-eu-1"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="ota-bridge-eu-1"):
        call_command("mqtt_bridge", "--client-id", "ota-bridge-eu-1", stderr=err)
    assert held.client_id == "ota-bridge-eu-1"
