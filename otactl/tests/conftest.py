"""The live server of the end-to-end OTA test, reused: listeners on ephemeral ports, broker."""

from __future__ import annotations

from simulator.tests.test_full_ota_flow import broker, server

__all__ = ["broker", "server"]
