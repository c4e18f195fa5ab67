from __future__ import annotations

from dataclasses import dataclass

from pqc.catalogue import PqcConfiguration
from pqc.client import ClientCredentials, TlsRefused, open_connection


@dataclass(frozen=True)
class ProbeResult:
    """What one restricted handshake against an endpoint showed."""

    config: PqcConfiguration
    accepted: bool
    group: str | None = None
    server_key_type: str | None = None
    handshake_ms: float | None = None
    note: str = ""


def probe_configuration(
    host: str,
    port: int,
    config: PqcConfiguration,
    *,
    credentials: ClientCredentials | None,
    server_hostname: str | None = None,
    verify_server: bool = True,
    settle_seconds: float = 0.3,
    timeout: float = 5.0,
) -> ProbeResult:
    """Handshake offering only `config`'s group and signature algorithm.

    In TLS 1.3 the client finishes before the server has judged its certificate, so the
    probe waits `settle_seconds` for an alert before calling the configuration accepted.
    """
    try:
        conn = open_connection(
            host,
            port,
            config=config,
            credentials=credentials,
            server_hostname=server_hostname,
            verify_server=verify_server,
            timeout=timeout,
        )
    except TlsRefused as exc:
        return ProbeResult(config=config, accepted=False, note=_short(str(exc)))
    info = conn.info
    assert info is not None
    result = ProbeResult(
        config=config,
        accepted=True,
        group=info.group,
        server_key_type=info.peer_key_type,
        handshake_ms=conn.handshake_seconds * 1000,
    )
    try:
        conn.sock.settimeout(settle_seconds)
        conn.recv()
    except TimeoutError:
        pass
    except TlsRefused as exc:
        result = ProbeResult(
            config=config,
            accepted=False,
            group=result.group,
            server_key_type=result.server_key_type,
            handshake_ms=result.handshake_ms,
            note="key exchange done, then refused: " + _short(str(exc)),
        )
    except OSError:
        pass
    finally:
        conn.close()
    return result


def _short(message: str) -> str:
    # OpenSSL error tuples are long; the reason string is the useful part.
    for marker in ("'", '"'):
        parts = message.split(marker)
        if len(parts) >= 6:
            return parts[5]
    return message[:80]
