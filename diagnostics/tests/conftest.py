from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.mqtt.testing import RecordingPublisher, recording_publisher


@pytest.fixture(autouse=True)
def published() -> Iterator[RecordingPublisher]:
    """Every test of this app records outbound MQTT instead of reaching a broker."""
    with recording_publisher() as recorder:
        yield recorder
