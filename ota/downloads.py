"""Download accounting: the bytes of a zone package served to a vehicle, as its update's evidence."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from core import metrics
from ota.services import record_download_progress

logger = logging.getLogger(__name__)

# Bytes served are recorded at most this often per download (and once at its end), so a large
# package costs a handful of writes rather than one per chunk.
DOWNLOAD_RECORD_SECONDS = 5.0


def record_package_served(*, vehicle_id: int, package_id: str, first: int, count: int) -> None:
    """Record that `count` bytes of a package from byte `first` reached a vehicle."""
    # The vehicle's update owns this evidence (success needs it, and it keeps a long download
    # alive); the download path is the only place that knows the bytes left.
    record_download_progress(vehicle_id=vehicle_id, package_id=package_id, first=first, count=count)
    metrics.PACKAGE_BYTES_SERVED.inc(count)


@dataclass
class DownloadMeter:
    """Counts the bytes of one package response as they leave and records them, throttled."""

    vehicle_id: int
    package_id: str
    first: int
    sent: int = 0
    recorded: int = 0
    recorded_at: float = 0.0

    def __post_init__(self) -> None:
        self.recorded_at = time.monotonic()

    def add(self, count: int) -> bool:
        """Count bytes sent; True when it is time to record them."""
        self.sent += count
        return time.monotonic() - self.recorded_at >= DOWNLOAD_RECORD_SECONDS

    def record(self) -> None:
        if self.sent <= self.recorded:
            return
        try:
            record_package_served(
                vehicle_id=self.vehicle_id,
                package_id=self.package_id,
                first=self.first + self.recorded,
                count=self.sent - self.recorded,
            )
        except Exception:
            # The bytes are still sent; without the record the vehicle cannot prove this
            # download and fetches it again, which is safe.
            logger.exception("recording download of %s failed", self.package_id)
            return
        self.recorded = self.sent
        self.recorded_at = time.monotonic()


def metered_download(body: Any, meter: DownloadMeter, *, asynchronous: bool) -> Any:
    """Wrap a response body (iterator or async iterator) so its bytes are recorded."""
    return _metered_async(body, meter) if asynchronous else _metered_sync(body, meter)


def _metered_sync(body: Iterator[bytes], meter: DownloadMeter) -> Iterator[bytes]:
    try:
        for chunk in body:
            yield chunk
            if meter.add(len(chunk)):
                meter.record()
    finally:
        meter.record()
        close = getattr(body, "close", None)
        if close is not None:
            close()


async def _metered_async(body: AsyncIterator[bytes], meter: DownloadMeter) -> AsyncIterator[bytes]:
    try:
        async for chunk in body:
            yield chunk
            if meter.add(len(chunk)):
                await sync_to_async(meter.record)()
    finally:
        await sync_to_async(meter.record)()
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
