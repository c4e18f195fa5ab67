"""The reference vehicle: `python -m simulator`.

A complete vehicle over PQC-TLS (the production path). It registers with its certificate,
reports its configuration (VCI), joins MQTT through the TLS front, and carries out every
update the server offers on its retained desired state (or on a `start_download` command):
update check, resumable 64 KiB Range downloads of each zone package, verification of both
signatures, expiry and anti-rollback against the fleet's signing keys, install, reboot, and
the VCI that proves the new versions run. Package signing keys are trusted from `--trust`
(default `var/signing/trust.pem`, what the server's `manage.py signing_keys` writes)::

    python manage.py pqc_pki issue-vehicle WVWZZZ1JZ3W386752 --out var/vehicles/WVWZZZ1JZ3W386752 \\
        --family ml-dsa-65
    python -m simulator --vin WVWZZZ1JZ3W386752 --credentials var/vehicles/WVWZZZ1JZ3W386752 \\
        --config 13

Options for demonstrations: `--fail verify|install|boot` (the next `--fail-times` updates
fail: package refused, flash error, or new software that does not boot so the vehicle rolls
back), `--activation command` (wait for the `activate` command before rebooting),
`--status-via mqtt` (OTA status on MQTT instead of HTTPS), `--cut-download-at BYTES` (drop
the connection once mid-download; the download resumes). `--print-sessions` prints the
negotiated group and certificate types of every connection at exit.

Many vehicles in one process: `python -m simulator fleet --help` (`simulator.fleet`).

MQTT only, without updates (plain loopback, for protocol tests)::

    python -m simulator --vin WVWZZZ1JZ3W386752 --mqtt-url mqtt://127.0.0.1:1883
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from simulator.ota import FAILURE_MODES, AgentOptions
from simulator.vehicle import SimulatedVehicle, VehicleConfig, start_vehicle

if TYPE_CHECKING:
    from pqc.catalogue import PqcConfiguration
    from simulator.reference import ReferenceVehicle

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "config" / "pqc_configs.yaml"
REGISTRY = ROOT / "config" / "ecu_registry.yaml"
# Where `manage.py signing_keys` writes the public keys on a development server.
TRUST = Path("var") / "signing" / "trust.pem"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming the option, not the whole usage text above it.
        self.exit(2, f"simulator: {message} (python -m simulator --help)\n")


def _number(kind: type, low: float, high: float | None = None) -> Callable[[str], Any]:
    """An argparse type: a number of `kind` in [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value < low or (high is not None and value > high):
            bound = f"{low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{bound}; got {text}")
        return value

    return parse


PORT = _number(int, 1, 65535)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m simulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--vin", required=True)
    server = parser.add_argument_group("server (PQC-TLS)")
    server.add_argument(
        "--host", "--pqc-host", dest="host", default="127.0.0.1", help="address of the server"
    )
    server.add_argument("--server-name", default="localhost", help="name on its certificate")
    server.add_argument("--api-port", type=PORT, default=8443, help="vehicle API (HTTPS)")
    server.add_argument(
        "--mqtt-port",
        "--pqc-port",
        dest="mqtt_port",
        type=PORT,
        default=8883,
        help="MQTT TLS front",
    )
    server.add_argument(
        "--credentials", type=Path, help="directory with vehicle.crt, vehicle.key, ca-bundle.pem"
    )
    server.add_argument("--config", type=int, default=1, help="PQC configuration id")
    server.add_argument(
        "--trust", type=Path, default=TRUST, help="trusted package signing keys (trust.pem)"
    )
    vehicle = parser.add_argument_group("vehicle")
    vehicle.add_argument("--model-name", default="Aurora")
    vehicle.add_argument("--model-year", type=int, default=2026)
    vehicle.add_argument("--vmg-id", default="")
    vehicle.add_argument("--build-sheet", type=Path, default=REGISTRY, help="ECU registry file")
    vehicle.add_argument(
        "--state-dir", type=Path, help="running versions and downloads (var/simulator/VIN)"
    )
    vehicle.add_argument("--no-register", action="store_true", help="skip registration")
    updates = parser.add_argument_group("updates")
    updates.add_argument("--fail", choices=FAILURE_MODES, default="none")
    updates.add_argument("--fail-times", type=_number(int, 0), default=1)
    updates.add_argument("--activation", choices=["auto", "command"], default="auto")
    updates.add_argument("--status-via", choices=["rest", "mqtt"], default="rest")
    updates.add_argument("--cut-download-at", type=_number(int, 1), default=None)
    updates.add_argument("--print-sessions", action="store_true")
    updates.add_argument(
        "--uptane-roots",
        type=Path,
        default=None,
        help="directory with image-root.json and director-root.json: verify Uptane metadata",
    )
    plain = parser.add_argument_group("MQTT only (no updates)")
    plain.add_argument("--mqtt-url", help="plain MQTT on loopback, e.g. mqtt://127.0.0.1:1883")
    parser.add_argument("--mqtt311", action="store_true", help="MQTT 3.1.1 instead of 5")
    parser.add_argument(
        "--topic-root", default="vehicle", help="the server's MQTT_TOPIC_ROOT (default: vehicle)"
    )
    parser.add_argument("--telemetry-interval", type=_number(float, 0.1), default=10.0)
    parser.add_argument(
        "--telemetry-count", type=_number(int, 1), default=None, help="stop after N messages"
    )
    parser.add_argument(
        "--answer-ecus", default="all", help='"all", "none", "odd", "even" or ECU ids'
    )
    return parser


def _plain_vehicle(args: argparse.Namespace) -> SimulatedVehicle:
    parts = urlsplit(args.mqtt_url)
    return start_vehicle(
        VehicleConfig(
            vin=args.vin,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 1883,
            topic_root=args.topic_root,
            protocol=mqtt.MQTTv311 if args.mqtt311 else mqtt.MQTTv5,
            telemetry_interval=args.telemetry_interval,
            answer_rule=args.answer_ecus,
        )
    )


class UsageError(Exception):
    """A mistake in the command line or the files it names; the message says which."""


def _configuration(args: argparse.Namespace) -> PqcConfiguration:
    """The configuration, checked against the certificate it must present (mutual TLS)."""
    from cryptography import x509

    from pqc.catalogue import CatalogueError, get_configuration, load_catalogue
    from pqc.pki import common_name
    from pqc.tls import certificate_family

    catalogue = load_catalogue(CATALOGUE)
    try:
        config = get_configuration(args.config, catalogue)
    except CatalogueError as exc:
        raise UsageError(f"--config {args.config}: {exc}") from None
    cert_path = args.credentials / "vehicle.crt"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        raise UsageError(
            f"--credentials {args.credentials}: no vehicle.crt there "
            "(manage.py pqc_pki issue-vehicle VIN --out DIR writes it)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--credentials: cannot read {cert_path}: {exc}") from None
    family = certificate_family(cert)
    if family != config.signature:
        # The client offers only the configuration's signature algorithm, so it could not
        # present this certificate: the server would answer "certificate required".
        fitting = [str(c.id) for c in catalogue if c.signature == family]
        choose = ", ".join(fitting[:-1]) + f" or {fitting[-1]}" if fitting else "none"
        raise UsageError(
            f"--config {config.id} ({config.name}) needs an {config.signature} certificate; "
            f"{cert_path} is {family}: use --config {choose}"
        )
    if common_name(cert) != args.vin:
        raise UsageError(f"--vin {args.vin}, but {cert_path} is for {common_name(cert)}")
    return config


def _reference_vehicle(args: argparse.Namespace) -> ReferenceVehicle:
    if not args.credentials:
        raise UsageError("--credentials is required (or --mqtt-url for MQTT only)")
    if not args.trust.is_file():
        raise UsageError(f"--trust {args.trust}: no such file (the server's signing trust.pem)")
    from pqc.client import ClientCredentials, TlsRefused
    from simulator.reference import ReferenceVehicle, ServerAddress

    reference = ReferenceVehicle(
        vin=args.vin,
        server=ServerAddress(
            host=args.host,
            api_port=args.api_port,
            mqtt_port=args.mqtt_port,
            server_name=args.server_name,
        ),
        config=_configuration(args),
        credentials=ClientCredentials.from_dir(args.credentials),
        trust_file=args.trust,
        build_sheet=args.build_sheet,
        state_dir=args.state_dir or Path("var") / "simulator" / args.vin,
        options=AgentOptions(
            fail=args.fail,
            fail_times=args.fail_times,
            activation=args.activation,
            status_via=args.status_via,
            cut_download_at=args.cut_download_at,
        ),
        model_name=args.model_name,
        model_year=args.model_year,
        vmg_id=args.vmg_id,
        mqtt_protocol=mqtt.MQTTv311 if args.mqtt311 else mqtt.MQTTv5,
        answer_rule=args.answer_ecus,
        telemetry_interval=args.telemetry_interval,
        topic_root=args.topic_root,
        uptane_roots=args.uptane_roots,
    )
    try:
        return reference.start(register=not args.no_register)
    except TlsRefused:
        raise
    except OSError as exc:
        if exc.errno is None:
            raise
        where = f"{args.host}:{args.api_port}"
        reason = (exc.strerror or str(exc)).lower()
        raise UsageError(
            f"cannot reach the vehicle API at {where}: {reason} (is the server running?)"
        ) from None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fleet"]:
        from simulator.fleet.runner import main as fleet_main

        fleet_main(argv[1:])
        return
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from simulator.https import HttpsError

    try:
        _run(args)
    except (UsageError, HttpsError, OSError, ValueError) as exc:
        # Expected failures (a wrong option, a server that refuses or is not there): one line.
        sys.exit(f"simulator: {exc}")


def _run(args: argparse.Namespace) -> None:
    if args.mqtt_url:
        vehicle = _plain_vehicle(args)
        reference = None
    else:
        reference = _reference_vehicle(args)
        vehicle = reference.mqtt
        assert vehicle is not None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), vehicle._stop.set()))
    vehicle.run_telemetry(count=args.telemetry_count)
    if reference is None:
        vehicle.stop()
        return
    reference.stop()
    if args.print_sessions:
        print(json.dumps(reference.describe_sessions(), indent=1))


if __name__ == "__main__":
    main()
