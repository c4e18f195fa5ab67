from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pqc import services
from pqc.pki import FAMILIES, FleetPki, PkiError, cert_to_pem, utcnow


class Command(BaseCommand):
    help = "Operate the fleet PKI: init, issue-vehicle, sign-csr, revoke, list."

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

    def _sign_csr(self, pki: FleetPki, options: dict[str, Any]) -> None:
        issued = services.sign_vehicle_csr(pki=pki, csr_pem=options["csr"].read(), **_actor())
        chain = cert_to_pem(issued.cert, *issued.chain)
        if options["out"]:
            options["out"].write_bytes(chain)
            self.stdout.write(
                f"signed {issued.family} certificate {issued.serial}: {options['out']}"
            )
        else:
            self.stdout.write(chain.decode(), ending="")

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
