from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pqc.catalogue import load_catalogue
from pqc.client import ClientCredentials
from pqc.probe import probe_configuration
from pqc.tls import certificate_family


class Command(BaseCommand):
    help = "Probe a TLS endpoint with each PQC configuration and print what it accepts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("host")
        parser.add_argument("port", type=int)
        parser.add_argument("--cert", type=Path, action="append", default=[],
                            help="Client certificate (PEM) for mutual TLS; repeat with --key "
                            "for one per signature family.")  # fmt: skip
        parser.add_argument("--key", type=Path, action="append", default=[],
                            help="Client private key (PEM), in the order of --cert.")  # fmt: skip
        parser.add_argument("--ca", type=Path, help="CA bundle (default: the local PKI's).")
        parser.add_argument("--servername", help="Name to expect in the server certificate.")
        parser.add_argument("--insecure", action="store_true", help="Do not verify the server.")
        parser.add_argument("--settle-ms", type=int, default=300,
                            help="Wait this long for a post-handshake alert.")  # fmt: skip

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["port"] <= 65535:
            raise CommandError(f"port: 1 to 65535; got {options['port']}")
        if not 0 <= options["settle_ms"] <= 10_000:
            raise CommandError(f"--settle-ms: 0 to 10000; got {options['settle_ms']}")
        ca = options["ca"] or Path(settings.PKI_DIR) / "ca-bundle.pem"
        if not options["insecure"] and not ca.exists():
            raise CommandError(f"--ca: {ca} does not exist (or pass --insecure)")
        if len(options["cert"]) != len(options["key"]):
            raise CommandError("--cert and --key go together, once per certificate")
        by_family = {}
        for cert, key in zip(options["cert"], options["key"], strict=True):
            try:
                family = certificate_family(x509.load_pem_x509_certificate(cert.read_bytes()))
            except (OSError, ValueError) as exc:
                raise CommandError(f"--cert: cannot read {cert}: {exc}") from None
            by_family[family] = ClientCredentials(ca=ca, cert=cert, key=key)
        anonymous = ClientCredentials(ca=ca)
        servername = options["servername"] or (
            "localhost" if options["host"] in {"127.0.0.1", "::1"} else options["host"]
        )
        rows = []
        host, port = options["host"], options["port"]
        for config in load_catalogue():
            try:
                result = probe_configuration(
                    host,
                    port,
                    config,
                    # The client offers one signature algorithm, so it can only present a
                    # certificate of that family; without one, mutual TLS fails by design.
                    credentials=by_family.get(config.signature) or anonymous,
                    server_hostname=servername,
                    verify_server=not options["insecure"],
                    settle_seconds=options["settle_ms"] / 1000,
                )
            except OSError as exc:
                reason = (exc.strerror or str(exc) or type(exc).__name__).lower()
                raise CommandError(f"cannot connect to {host}:{port}: {reason}") from None
            ms = f"{result.handshake_ms:.1f}" if result.handshake_ms is not None else "-"
            rows.append(
                [str(config.id), config.name, "yes" if result.accepted else "no",
                 result.group or "-", result.server_key_type or "-", ms, result.note]
            )  # fmt: skip
        header = ["id", "configuration", "accepted", "group", "server cert", "handshake ms", "note"]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        self.stdout.write(f"PQC-TLS probe of {options['host']}:{options['port']}")
        for row in [header, ["-" * w for w in widths], *rows]:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
        accepted = sum(1 for r in rows if r[2] == "yes")
        self.stdout.write(f"{accepted} of {len(rows)} configurations accepted")
        if not accepted:
            # Scripts and health checks read the exit status, not the table.
            raise CommandError(f"no PQC-TLS configuration accepted by {host}:{port}")
