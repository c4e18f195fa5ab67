"""Full PQC-TLS 1.3 handshakes per second and bytes on the wire, per configuration.

Runs every configuration of config/pqc_configs.yaml against the same server in one run:
  * listener: our vehicle listener (Twisted TLS + Daphne, mutual TLS, revocation check),
  * bare:     a blocking pyOpenSSL accept-and-handshake loop with the same server context
              (the crypto-only limit of the server path),
  * memory:   client and server in one thread over memory BIOs, no sockets (pure CPU cost).
Each handshake is a fresh TCP connection with a client certificate of the configuration's
signature family; the client waits for the server's session tickets, which OpenSSL sends
only after it has verified the client's certificate and Finished.

Usage: python bench/tls_handshake.py [--count 200] [--max-seconds 5] [--configs 1,4,6]
Every loop is bounded by --count and --max-seconds per configuration and mode.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "otaproject.settings")


@dataclass
class Measurement:
    rate: float  # handshakes per second
    p50_ms: float
    client_bytes: int
    server_bytes: int
    count: int


def _client_handshake(host: str, port: int, config, credentials) -> tuple[float, int, int]:
    """One full handshake; returns (seconds, bytes client->server, bytes server->client)."""
    from OpenSSL import SSL

    from pqc.client import open_connection

    start = time.perf_counter()
    conn = open_connection(
        host, port, config=config, credentials=credentials, server_hostname="localhost"
    )
    sent, received = conn.bytes_sent, conn.bytes_received
    # Wait for the first session ticket: proof the server accepted our certificate.
    while True:
        if not conn._fill():
            raise RuntimeError("server closed the connection")
        try:
            conn.tls.recv(1)
        except SSL.WantReadError:
            if conn.bytes_received > received:
                break
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, sent, received


def _measure(host: str, port: int, config, credentials, count: int, max_seconds: float):
    times, sent, received = [], 0, 0
    deadline = time.perf_counter() + max_seconds
    while len(times) < count and time.perf_counter() < deadline:
        seconds, sent, received = _client_handshake(host, port, config, credentials)
        times.append(seconds)
    return times, sent, received


def _summarise(times: list[float], sent: int, received: int) -> Measurement:
    # The median resists the scheduling spikes of a shared machine better than the mean.
    return Measurement(
        rate=1 / statistics.median(times),
        p50_ms=statistics.median(times) * 1000,
        client_bytes=sent,
        server_bytes=received,
        count=len(times),
    )


class BareServer:
    """Accept, handshake with pyOpenSSL on a blocking socket, close: nothing else."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        from OpenSSL import SSL

        while not self.stop.is_set():
            try:
                raw, _ = self.sock.accept()
            except TimeoutError:
                continue
            # pyOpenSSL needs a truly blocking socket; Python timeouts make it non-blocking.
            raw.setblocking(True)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = SSL.Connection(self.ctx, raw)
            conn.set_accept_state()
            try:
                conn.do_handshake()
                conn.recv(1)  # returns when the client closes
            except (SSL.Error, OSError):
                pass
            raw.close()


def _memory_rate(server_ctx, config, credentials, count: int, max_seconds: float) -> float:
    from OpenSSL import SSL

    from pqc.tls import build_client_context

    client_ctx = build_client_context(
        config=config, cert_path=credentials.cert, key_path=credentials.key, ca_path=credentials.ca
    )
    done, deadline = 0, time.perf_counter() + max_seconds
    start = time.perf_counter()
    while done < count and time.perf_counter() < deadline:
        server = SSL.Connection(server_ctx, None)
        server.set_accept_state()
        client = SSL.Connection(client_ctx, None)
        client.set_connect_state()
        for _ in range(10):
            finished = 0
            for side, peer in ((client, server), (server, client)):
                try:
                    side.do_handshake()
                    finished += 1
                except SSL.WantReadError:
                    pass
                with contextlib.suppress(SSL.WantReadError):
                    peer.bio_write(side.bio_read(1 << 20))
            if finished == 2:
                break
        else:
            raise RuntimeError(f"in-memory handshake for config {config.id} did not finish")
        done += 1
    return done / (time.perf_counter() - start)


def run(args: argparse.Namespace) -> str:
    import django

    django.setup()
    from OpenSSL import SSL

    from otaproject.asgi import application
    from pqc.catalogue import build_policy, load_catalogue
    from pqc.client import ClientCredentials
    from pqc.pki import FAMILIES, FleetPki
    from pqc.server import listeners_from_settings, start_in_thread, stop_in_thread
    from pqc.tls import RevocationList, build_server_context

    catalogue = [c for c in load_catalogue() if not args.configs or c.id in args.configs]
    base = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    pki = FleetPki(base / "pki")
    pki.init(hostnames=["localhost"])
    creds = {}
    for family in FAMILIES:
        issued = pki.issue_vehicle("WVWZZZ1JZXW000001", family=family)
        paths = pki.write_vehicle_bundle(issued, base / family)
        creds[family] = ClientCredentials(ca=paths.ca_bundle, cert=paths.cert, key=paths.key)

    accept = [c.id for c in load_catalogue()]
    listeners = listeners_from_settings(
        application=application, pki=pki, host="127.0.0.1", vehicle_port=0, console_port=0,
        with_mqtt=False, accept=accept, mqtt_upstream=("127.0.0.1", 1), on_vehicle_handshake=None,
    )  # fmt: skip
    ports = start_in_thread(listeners)
    bare_ctx = build_server_context(
        pki=pki,
        policy=build_policy(accept=accept),
        require_client_cert=True,
        revocation=RevocationList(pki),
    )
    bare = BareServer(bare_ctx)
    samples: dict[int, dict[str, list]] = {
        c.id: {"listener": [], "bare": [], "memory": [], "bytes": [0, 0]} for c in catalogue
    }
    targets = {"listener": ports["vehicle"], "bare": bare.port}
    # The client runs in its own process so that its Python work does not compete with the
    # servers for this process's GIL.
    client = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        for config in catalogue:  # warm-up: page in code paths on both servers
            for port in targets.values():
                client.submit(
                    _client_handshake, "127.0.0.1", port, config, creds[config.signature]
                ).result()
        # Rounds interleave the configurations so drifting machine load hits them all alike.
        per_round = max(1, args.count // args.rounds)
        for round_no in range(args.rounds):
            for config in catalogue:
                cred = creds[config.signature]
                bucket = samples[config.id]
                for name, port in targets.items():
                    times, sent, received = client.submit(
                        _measure,
                        "127.0.0.1",
                        port,
                        config,
                        cred,
                        per_round,
                        args.max_seconds / args.rounds,
                    ).result()
                    bucket[name].extend(times)
                    if name == "listener":
                        bucket["bytes"] = [sent, received]
                bucket["memory"].append(
                    _memory_rate(bare_ctx, config, cred, per_round, args.max_seconds / args.rounds)
                )
            print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        client.shutdown()
        bare.stop.set()
        stop_in_thread(listeners)
    results = {}
    for config in catalogue:
        bucket = samples[config.id]
        sent, received = bucket["bytes"]
        results[config.id] = (
            config,
            _summarise(bucket["listener"], sent, received),
            _summarise(bucket["bare"], sent, received),
            statistics.median(bucket["memory"]),
        )
    return _table(results, args, SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode())


def _table(results: dict, args: argparse.Namespace, openssl: str) -> str:
    classical = next((r for r in results.values() if r[0].classical), None)
    base_rate = classical[1].rate if classical else None
    lines = [
        "# TLS handshake benchmark",
        "",
        f"Command: `python bench/tls_handshake.py {' '.join(args.argv)}`".replace("  ", " "),
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {openssl}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs ({platform.machine()}).",
        "",
        "Full TLS 1.3 handshakes with mutual authentication over loopback, one client at a time, "
        f"each on a new TCP connection; up to {args.count} handshakes or {args.max_seconds:g} s "
        f"per configuration and server, in {args.rounds} interleaved rounds, the client in a separate process. hs/s is the "
        "inverse of the median handshake time (client and server crypto both included).",
        "`vs classical` is handshake time relative to X25519 + ECDSA-P256 on our listener "
        "(1.00 = as fast). `listener/bare` is the bare pyOpenSSL loop's rate over our "
        "listener's (1.00 = no overhead). `memory` is client and server in one thread without "
        "sockets. Bytes are the handshake records each way, session tickets excluded.",
        "",
        "| id | configuration | listener hs/s | p50 ms | vs classical | bare hs/s "
        "| listener/bare | memory hs/s | bytes C->S | bytes S->C | bytes total |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, listener, bare, memory in results.values():
        vs = f"{base_rate / listener.rate:.2f}x" if base_rate else "-"
        total = listener.client_bytes + listener.server_bytes
        lines.append(
            f"| {config.id} | {config.name} | {listener.rate:.0f} | {listener.p50_ms:.2f} | {vs} "
            f"| {bare.rate:.0f} | {bare.rate / listener.rate:.2f}x | {memory:.0f} "
            f"| {listener.client_bytes:,} | {listener.server_bytes:,} | {total:,} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="Handshakes per configuration.")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="Time cap per measurement.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds.")
    parser.add_argument("--configs", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tls.md")
    args = parser.parse_args(argv)
    args.argv = argv
    table = run(args)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
