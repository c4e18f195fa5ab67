from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pqc import services
from pqc.pki import (
    FAMILIES,
    FleetPki,
    PkiError,
    cert_to_pem,
    fleet_vin,
    parse_shares,
    spread_shares,
    utcnow,
    validate_days,
    validate_family,
)

# A bound on one run's size, so a typing slip does not fill the disk.
MAX_FLEET = 200_000


class Command(BaseCommand):
    help = "Operate the fleet PKI: init, issue-vehicle, issue-fleet, sign-csr, revoke, list."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        init = sub.add_parser("init", help="Create the root CAs and server certificates.")
        init.add_argument("--family", action="append", choices=FAMILIES, dest="families",
                          help="Only this family (repeatable); default: all four.")  # fmt: skip
        init.add_argument("--hostname", action="append", dest="hostnames",
                          help="Server name for the SAN (repeatable); default: OTA_SERVER_HOSTNAMES.")  # fmt: skip
        init.add_argument("--force", action="store_true", help="Replace existing CAs and keys.")

        issue = sub.add_parser("issue-vehicle", help="Issue a vehicle key and certificate.")
        issue.add_argument("vin")
        issue.add_argument("--out", required=True, type=Path, help="Directory for the PEM files.")
        issue.add_argument("--family", choices=FAMILIES, default="ecdsa-p256")
        issue.add_argument("--days", type=int, default=None)

        fleet = sub.add_parser(
            "issue-fleet", help="Issue keys and certificates for a simulated fleet, with progress."
        )
        fleet.add_argument("--count", type=int, required=True, help="Number of vehicles.")
        fleet.add_argument("--out", required=True, type=Path,
                           help="Directory: <VIN>/vehicle.{crt,key}, ca-bundle.pem, fleet.json.")  # fmt: skip
        fleet.add_argument("--families", default="ecdsa-p256",
                           help='Mix of key families, e.g. "ecdsa-p256:60,ml-dsa-65:40".')  # fmt: skip
        fleet.add_argument("--vin-prefix", default="WFLEET",
                           help="VINs are this prefix and the vehicle's number, 17 characters.")  # fmt: skip
        fleet.add_argument("--days", type=int, default=None)

        csr = sub.add_parser("sign-csr", help="Sign a vehicle CSR (PEM); the CN must be the VIN.")
        csr.add_argument("csr", type=argparse.FileType("rb"))
        csr.add_argument("--out", type=Path, help="Write the chain here instead of stdout.")

        revoke = sub.add_parser("revoke", help="Revoke a certificate by serial (hex).")
        revoke.add_argument("serial")
        revoke.add_argument("--reason", default="")

        sub.add_parser("list", help="List issued certificates with expiry and revocation.")

    def handle(self, *args: Any, **options: Any) -> None:
        pki = FleetPki.from_settings()
        try:
            if options.get("days") is not None:
                validate_days(options["days"])
            getattr(self, "_" + options["action"].replace("-", "_"))(pki, options)
        except PkiError as exc:
            raise CommandError(str(exc)) from None

    def _init(self, pki: FleetPki, options: dict[str, Any]) -> None:
        hostnames = options["hostnames"] or list(settings.OTA_SERVER_HOSTNAMES)
        created = services.initialise_pki(
            pki=pki,
            **_actor(),
            families=options["families"] or FAMILIES,
            hostnames=hostnames,
            force=options["force"],
        )
        for item in created:
            self.stdout.write(f"created {item}")
        if not created:
            self.stdout.write("PKI already initialised (use --force to replace it)")
        self.stdout.write(f"CA bundle: {pki.ca_bundle_path}")

    def _issue_vehicle(self, pki: FleetPki, options: dict[str, Any]) -> None:
        issued, paths = services.issue_vehicle_certificate(
            pki=pki,
            vin=options["vin"],
            family=options["family"],
            out_dir=options["out"],
            **_actor(),
            days=options["days"],
        )
        self.stdout.write(
            f"issued {issued.family} certificate {issued.serial} for {options['vin']}"
        )
        self.stdout.write(f"  certificate chain: {paths.cert}")
        self.stdout.write(f"  private key (0600): {paths.key}")
        self.stdout.write(f"  CA bundle: {paths.ca_bundle}")

    def _issue_fleet(self, pki: FleetPki, options: dict[str, Any]) -> None:
        count = options["count"]
        if not 1 <= count <= MAX_FLEET:
            raise PkiError(f"count: between 1 and {MAX_FLEET}")
        shares = parse_shares(options["families"], name="families")
        for family, _ in shares:
            validate_family(family)
        prefix = options["vin_prefix"]
        fleet_vin(count - 1, prefix)  # the longest number must still make a VIN
        started = time.monotonic()

        def progress(done: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-9)
            self.stderr.write(f"issued {done}/{count} ({done / elapsed:.0f}/s)")

        manifest = services.issue_fleet_certificates(
            pki=pki,
            families=spread_shares(shares, count),
            out_dir=options["out"],
            vin_prefix=prefix,
            days=options["days"],
            progress=progress,
            **_actor(),
        )
        elapsed = time.monotonic() - started
        self.stdout.write(f"issued {count} vehicle certificates in {elapsed:.1f} s: {manifest}")

    def _sign_csr(self, pki: FleetPki, options: dict[str, Any]) -> None:
        out: Path | None = options["out"]
        if out is None:
            issued = services.sign_vehicle_csr(pki=pki, csr_pem=options["csr"].read(), **_actor())
            self.stdout.write(cert_to_pem(issued.cert, *issued.chain).decode(), ending="")
            return
        # Opened before signing: a chain that cannot be delivered must not count as issued.
        created = not out.exists()
        try:
            target = out.open("xb" if created else "r+b")
        except OSError as exc:
            raise PkiError(
                f"out: cannot write {out}: {exc.strerror or exc}; nothing was issued"
            ) from None
        try:
            with target:
                issued = services.sign_vehicle_csr(
                    pki=pki, csr_pem=options["csr"].read(), **_actor()
                )
                target.truncate(0)
                target.write(cert_to_pem(issued.cert, *issued.chain))
        except BaseException:
            if created:
                out.unlink(missing_ok=True)
            raise
        self.stdout.write(f"signed {issued.family} certificate {issued.serial}: {out}")

    def _revoke(self, pki: FleetPki, options: dict[str, Any]) -> None:
        revoked = services.revoke_certificate(
            pki=pki, serial=options["serial"], **_actor(), reason=options["reason"]
        )
        self.stdout.write(f"revoked {revoked.serial} ({revoked.subject}); listeners refuse it now")

    def _list(self, pki: FleetPki, options: dict[str, Any]) -> None:
        infos = pki.list_certificates()
        if not infos:
            self.stdout.write("no certificates issued")
            return
        header = f"{'serial':<42} {'kind':<8} {'subject':<20} {'family':<11} {'expires':<20} status"
        self.stdout.write(header)
        now = utcnow()
        for info in infos:
            status = "revoked" if info.revoked else "expired" if info.not_after < now else "valid"
            expires = info.not_after.strftime("%Y-%m-%d %H:%M")
            self.stdout.write(
                f"{info.serial:<42} {info.kind:<8} {info.subject:<20} {info.family:<11} "
                f"{expires:<20} {status}"
            )


def _actor() -> dict[str, str]:
    # The trail names the command; the operating-system account that ran it goes in details.
    return {"actor": "system:pqc_pki", "os_user": getpass.getuser()}
