"""Run a reference vehicle: `python -m simulator --vin WVWZZZ1JZ3W386752 --mqtt-url mqtt://127.0.0.1:1883`.

Over PQC-TLS (the production path): `python -m simulator --vin ... --pqc-host localhost
--pqc-port 8883 --credentials var/pki/vehicles/<VIN> --config 1`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from simulator.vehicle import SimulatedVehicle, VehicleConfig

CATALOGUE = Path(__file__).resolve().parent.parent / "config" / "pqc_configs.yaml"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--vin", required=True)
    parser.add_argument("--mqtt-url", help="plain MQTT on loopback, e.g. mqtt://127.0.0.1:1883")
    parser.add_argument("--pqc-host", help="the server's PQC-TLS MQTT front")
    parser.add_argument("--pqc-port", type=int, default=8883)
    parser.add_argument(
        "--credentials", type=Path, help="directory with vehicle.crt/.key, ca-bundle.pem"
    )
    parser.add_argument(
        "--config", type=int, default=1, help="PQC configuration id of the catalogue"
    )
    parser.add_argument("--mqtt311", action="store_true", help="MQTT 3.1.1 instead of 5")
    parser.add_argument("--topic-root", default="vehicle")
    parser.add_argument("--telemetry-interval", type=float, default=10.0)
    parser.add_argument("--telemetry-count", type=int, default=None, help="stop after N messages")
    parser.add_argument(
        "--answer-ecus", default="all", help='"all", "none", "odd", "even" or ECU ids'
    )
    return parser


def _pqc_tunnel(args: argparse.Namespace) -> tuple[str, int]:
    from pqc.catalogue import get_configuration, load_catalogue
    from pqc.client import ClientCredentials, MqttTlsTunnel

    if not args.credentials:
        sys.exit("--credentials is required with --pqc-host")
    config = get_configuration(args.config, load_catalogue(CATALOGUE))
    tunnel = MqttTlsTunnel(
        host=args.pqc_host,
        port_remote=args.pqc_port,
        connect={"config": config, "credentials": ClientCredentials.from_dir(args.credentials)},
    ).start()
    logging.info(
        "PQC-TLS to %s:%s with configuration %s", args.pqc_host, args.pqc_port, args.config
    )
    return "127.0.0.1", tunnel.port


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.pqc_host:
        host, port = _pqc_tunnel(args)
    elif args.mqtt_url:
        parts = urlsplit(args.mqtt_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
    else:
        sys.exit("give --mqtt-url or --pqc-host")
    vehicle = SimulatedVehicle(
        VehicleConfig(
            vin=args.vin,
            host=host,
            port=port,
            topic_root=args.topic_root,
            protocol=mqtt.MQTTv311 if args.mqtt311 else mqtt.MQTTv5,
            telemetry_interval=args.telemetry_interval,
            answer_rule=args.answer_ecus,
        )
    ).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (stop.set(), vehicle._stop.set()))
    vehicle.run_telemetry(count=args.telemetry_count)
    vehicle.stop()


if __name__ == "__main__":
    main()
