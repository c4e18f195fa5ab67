"""Revocation reaches connections that are already open.

The mutual-TLS listeners refuse a revoked certificate at the handshake, but a vehicle that
connected before the revocation would keep its HTTPS keep-alive or MQTT connection for as long
as it likes. Every open vehicle connection is tracked with its certificate serial, and every
`OTA_REVOCATION_CHECK_SECONDS` the CRL files are re-read (only when they changed on disk, so a
`pqc_pki revoke` in another process is seen) and the connections of revoked serials are cut.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from twisted.internet.task import LoopingCall

from pqc.tls import RevocationList

logger = logging.getLogger(__name__)


class OpenConnections:
    """The open mutual-TLS connections of a process, each with its client certificate serial."""

    def __init__(
        self, revocation: RevocationList, *, interval: float | None = None, reactor: Any = None
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.revocation = revocation
        # The longest a revoked vehicle keeps an open connection, plus the time one sweep takes.
        self.interval = float(interval or settings.OTA_REVOCATION_CHECK_SECONDS)
        self._reactor = reactor
        # protocol -> serial; a protocol is the TLS layer of one connection.
        self._serials: dict[Any, int] = {}
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = reactor
        self.closed_total = 0

    def track(self, protocol: Any, serial: int) -> None:
        """Remember an open connection; call on the reactor thread when its handshake finished."""
        self._serials[protocol] = serial

    def __len__(self) -> int:
        return len(self._serials)

    def start(self) -> None:
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> int:
        """Cut every open connection whose certificate is revoked; forget closed ones."""
        # The lists are read (or found unchanged) once per sweep, not once per connection.
        revoked = self._revoked()
        closed = 0
        for protocol, serial in list(self._serials.items()):
            transport = getattr(protocol, "transport", None)
            if transport is None or not getattr(transport, "connected", False):
                # Gone since the last sweep: nothing to cut, nothing to keep.
                del self._serials[protocol]
                continue
            if serial in revoked:
                del self._serials[protocol]
                logger.warning("closing a connection of revoked certificate %x", serial)
                protocol.abortConnection()
                closed += 1
        self.closed_total += closed
        return closed

    def _revoked(self) -> frozenset[int]:
        try:
            return self.revocation.revoked_serials()
        except Exception:
            # An unreadable CRL must not stop the sweeps; the next one tries again.
            logger.exception("could not read the certificate revocation lists")
            return frozenset()
