"""Test helpers for code that publishes over MQTT: record publishes instead of sending them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from core.mqtt.publisher import set_publisher


@dataclass
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @property
    def document(self) -> Any:
        return json.loads(self.payload)


@dataclass
class RecordingPublisher:
    messages: list[Published] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        self.messages.append(Published(topic, payload, qos, retain))

    def to(self, topic_suffix: str) -> list[Published]:
        return [m for m in self.messages if m.topic.endswith(topic_suffix)]


@contextmanager
def recording_publisher() -> Iterator[RecordingPublisher]:
    recorder = RecordingPublisher()
    previous = set_publisher(recorder)
    try:
        yield recorder
    finally:
        set_publisher(previous)
