"""otactl's command line: the parser, and main(), which turns every failure into one line on
stderr and a non-zero exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from otactl import commands
from otactl.errors import OtactlError


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command is not reset by the command's own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help="console URL (OTACTL_URL; default https://localhost:8444)")  # fmt: skip
    common.add_argument("--ca", default=argparse.SUPPRESS,
                        help="CA bundle to trust (OTACTL_CA; default var/pki/ca-bundle.pem)")  # fmt: skip
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON for scripts")  # fmt: skip
    return common


def _paged(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="rows per page (1..1000)")
    # Lists that can grow to a fleet's size page by cursor, the others by offset: the footer
    # of each page names the option that fetches the next one.
    parser.add_argument("--offset", type=int)
    parser.add_argument("--cursor", help="the position a previous page's footer names")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="otactl",
        parents=[common],
        description="Operate the OTA server over post-quantum TLS (X25519MLKEM768).",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    leaf = _leaf_maker(common)
    login = leaf(groups, "login", commands.cmd_login, "get an API token and store it")
    login.add_argument("--username", "-u")
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")  # fmt: skip
    leaf(groups, "logout", commands.cmd_logout, "revoke the stored token")
    for add_group in (_vehicles, _firmware, _campaigns, _diagnostics, _audit):
        add_group(groups, leaf)
    return parser


Leaf = Callable[[Any, str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def _leaf_maker(common: argparse.ArgumentParser) -> Leaf:
    def leaf(subparsers: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    return leaf


def _group(groups: Any, name: str, help: str) -> Any:
    return groups.add_parser(name, help=help).add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )


def _vehicles(groups: Any, leaf: Leaf) -> None:
    vehicles = _group(groups, "vehicles", "the fleet")
    listing = leaf(vehicles, "list", commands.cmd_vehicles_list, "list vehicles")
    listing.add_argument("--filter", "-f", action="append", metavar="KEY=VALUE",
                         help="a server filter, e.g. status=active (repeatable)")  # fmt: skip
    _paged(listing)
    leaf(vehicles, "show", commands.cmd_vehicles_show, "one vehicle").add_argument("vin")


def _firmware(groups: Any, leaf: Leaf) -> None:
    firmware = _group(groups, "firmware", "firmware releases")
    listing = leaf(firmware, "list", commands.cmd_firmware_list, "list releases")
    listing.add_argument("--ecu-type")
    listing.add_argument("--hardware-version")
    listing.add_argument("--version")
    listing.add_argument("--status", choices=["available", "deprecated"])
    _paged(listing)
    leaf(firmware, "show", commands.cmd_firmware_show, "one release").add_argument("id", type=int)
    upload = leaf(firmware, "upload", commands.cmd_firmware_upload, "upload an image")
    upload.add_argument("file")
    upload.add_argument("--ecu-type", required=True)
    upload.add_argument("--version", required=True)
    upload.add_argument("--hardware-versions", help="comma-separated, e.g. 2.0,2.1")
    upload.add_argument("--notes", help="release notes")
    download = leaf(firmware, "download", commands.cmd_firmware_download, "download an image")
    download.add_argument("id", type=int)
    download.add_argument("--output", "-o", help="file to write (default ECU-VERSION.bin)")
    deprecate = leaf(firmware, "deprecate", commands.cmd_firmware_deprecate, "withdraw a release")
    deprecate.add_argument("id", type=int)


def _campaigns(groups: Any, leaf: Leaf) -> None:
    campaigns = _group(groups, "campaigns", "update campaigns")
    listing = leaf(campaigns, "list", commands.cmd_campaigns_list, "list campaigns")
    listing.add_argument("--filter", "-f", action="append", metavar="KEY=VALUE")
    _paged(listing)
    create = leaf(campaigns, "create", commands.cmd_campaigns_create, "create a draft campaign")
    create.add_argument("--name", required=True)
    create.add_argument("--firmware", type=int, action="append", required=True, metavar="ID")
    create.add_argument("--vin", action="append", help="target this VIN (repeatable)")
    create.add_argument("--model", action="append", help="target this model name (repeatable)")
    create.add_argument("--model-year", type=int, action="append")
    create.add_argument("--zone", action="append")
    create.add_argument("--waves", help="cumulative percentages, e.g. 1,10,100")
    create.add_argument("--start-at", help="ISO 8601 time")
    create.add_argument("--success-threshold", type=float)
    create.add_argument("--failure-threshold", type=float)
    create.add_argument("--max-attempts", type=int)
    for name in ("start", "pause", "resume", "cancel"):
        sub = leaf(campaigns, name, commands.cmd_campaigns_action, f"{name} a campaign")
        sub.add_argument("id", type=int)
        sub.set_defaults(action=name)
        if name == "pause":
            sub.add_argument("--reason")
    watch = leaf(campaigns, "watch", commands.cmd_campaigns_watch, "live progress until it ends")
    watch.add_argument("id", type=int)
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    watch.add_argument("--timeout", type=float, help="give up after this many seconds")


def _diagnostics(groups: Any, leaf: Leaf) -> None:
    diagnostics = _group(groups, "diagnostics", "remote diagnostics")
    send = leaf(diagnostics, "send", commands.cmd_diagnostics_send, "send a UDS request")
    send.add_argument("--vin", required=True)
    send.add_argument("--ecu", help="ECU id, e.g. ECU_001")
    send.add_argument("--zone", help="zonal gateway id (functional request)")
    send.add_argument("--service", required=True, help='e.g. 0x22 or "ReadDataByIdentifier"')
    send.add_argument("--param", action="append", metavar="KEY=VALUE",
                      help='a service parameter, e.g. dids=["0xF190"] (JSON for lists)')  # fmt: skip
    send.add_argument("--timeout-ms", type=int, default=5000)
    send.add_argument("--wait", action="store_true", help="wait for the answers")


def _audit(groups: Any, leaf: Leaf) -> None:
    audit = _group(groups, "audit", "the audit trail")
    export = leaf(audit, "export", commands.cmd_audit_export, "export the audit trail")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--since")
    export.add_argument("--until")
    export.add_argument("--vin")
    export.add_argument("--action", help="prefix, e.g. campaign.")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name, default in (("url", None), ("ca", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        return args.handler(args)
    except OtactlError as exc:
        print(f"otactl: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("otactl: interrupted", file=sys.stderr)
        return 130


def main_exit() -> None:
    """The console script's entry point."""
    sys.exit(main())
