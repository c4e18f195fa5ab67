"""otactl's commands. Every failure ends in one line on stderr and a non-zero exit status."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otactl import render
from otactl.console import Console, dumps
from otactl.errors import OtactlError
from otactl.settings import read_config, resolve, write_config

# Campaign statuses after which nothing changes.
ENDED = {"completed", "cancelled"}
# Exit status of `campaigns watch` when the campaign was cancelled, or --timeout passed.
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise OtactlError(f"{option}: {value!r} is not KEY=VALUE")
        pairs[key] = text
    return pairs


def _param_value(text: str) -> Any:
    """A list or object is given as JSON (dids=["0xF190"]); anything else stays a string."""
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except ValueError:
            raise OtactlError(f"--param: {text!r} is not valid JSON") from None
    return text


def _print(args: argparse.Namespace, data: Any, human: str) -> None:
    print(dumps(data) if args.json else human)


def _console(args: argparse.Namespace) -> Console:
    return Console(resolve(url=args.url, ca=args.ca))


# -- login ------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    target = resolve(url=args.url, ca=args.ca)
    username = args.username or input("username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
    console = Console(target)
    body = console.request(
        "POST",
        "auth/login",
        json_body={"username": username, "password": password},
        authenticated=False,
    ).json()
    path = write_config(
        {
            "url": target.url,
            "ca": str(target.ca.resolve()),
            "username": username,
            "token": body["token"],
            "expiry": body.get("expiry") or "",
        }
    )
    result = {
        "url": target.url,
        "username": username,
        "expiry": body.get("expiry"),
        "config": str(path),
    }
    _print(args, result, f"logged in to {target.url} as {username} until {body.get('expiry')}")
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    console = _console(args)
    console.request("POST", "auth/logout")
    stored = read_config()
    stored.pop("token", None)
    stored.pop("expiry", None)
    write_config(stored)
    _print(args, {"logged_out": True}, "logged out; the token is revoked")
    return 0


# -- vehicles -------------------------------------------------------------------------------------

VEHICLE_COLUMNS = ["vin", "model_name", "model_year", "status", "last_seen"]


def cmd_vehicles_list(args: argparse.Namespace) -> int:
    query = {**_pairs(args.filter, "--filter"), **_page_query(args)}
    body = _console(args).get("vehicles", **query)
    rows = body.get("results", [])
    _print(
        args,
        body,
        f"{render.table(rows, VEHICLE_COLUMNS)}\n{render.page_footer(body)}",
    )
    return 0


def cmd_vehicles_show(args: argparse.Namespace) -> int:
    vehicle = _console(args).get(f"vehicles/{args.vin}")
    human = "\n".join(f"{k}: {v}" for k, v in vehicle.items() if not isinstance(v, list | dict))
    _print(args, vehicle, human)
    return 0


# -- firmware -------------------------------------------------------------------------------------

FIRMWARE_COLUMNS = ["id", "ecu_type", "version", "status", "size", "hardware_versions"]


def cmd_firmware_list(args: argparse.Namespace) -> int:
    query = {
        "ecu_type": args.ecu_type,
        "hardware_version": args.hardware_version,
        "version": args.version,
        "status": args.status,
        **_page_query(args),
    }
    body = _console(args).get("firmware", **query)
    rows = body.get("results", [])
    _print(
        args,
        body,
        f"{render.table(rows, FIRMWARE_COLUMNS)}\n{render.page_footer(body)}",
    )
    return 0


def _firmware_human(release: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {render.cell(v)}" for k, v in release.items() if k != "same_bytes_as")


def cmd_firmware_show(args: argparse.Namespace) -> int:
    release = _console(args).get(f"firmware/{args.id}")
    _print(args, release, _firmware_human(release))
    return 0


def cmd_firmware_upload(args: argparse.Namespace) -> int:
    fields = {"ecu_type": args.ecu_type, "version": args.version}
    if args.hardware_versions:
        fields["hardware_versions"] = args.hardware_versions
    if args.notes:
        fields["release_notes"] = args.notes
    release = _console(args).upload("firmware/upload", fields, Path(args.file))
    _print(
        args,
        release,
        f"uploaded firmware {release['id']}: {release['ecu_type']} {release['version']}",
    )
    return 0


def cmd_firmware_deprecate(args: argparse.Namespace) -> int:
    release = _console(args).post(f"firmware/{args.id}/deprecate")
    _print(
        args,
        release,
        f"firmware {release['id']} ({release['ecu_type']} {release['version']}) is {release['status']}",
    )
    return 0


# -- campaigns ------------------------------------------------------------------------------------

CAMPAIGN_COLUMNS = ["id", "name", "status", "created_at"]


def cmd_campaigns_list(args: argparse.Namespace) -> int:
    query = {**_pairs(args.filter, "--filter"), **_page_query(args)}
    body = _console(args).get("campaigns", **query)
    rows = body.get("results", [])
    _print(
        args,
        body,
        f"{render.table(rows, CAMPAIGN_COLUMNS)}\n{render.page_footer(body)}",
    )
    return 0


def _waves(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise OtactlError(
            f"--waves: {text!r} is not a comma-separated list of percentages"
        ) from None


def cmd_campaigns_create(args: argparse.Namespace) -> int:
    payload: dict[str, Any] = {"name": args.name, "firmware_ids": args.firmware}
    optional = {
        "target_vins": args.vin,
        "target_model_names": args.model,
        "target_model_years": args.model_year,
        "target_zones": args.zone,
        "wave_percentages": _waves(args.waves) if args.waves else None,
        "start_at": args.start_at,
        "success_threshold": args.success_threshold,
        "failure_threshold": args.failure_threshold,
        "max_attempts": args.max_attempts,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    campaign = _console(args).post("campaigns", payload)
    _print(args, campaign, f"created campaign {campaign['id']} ({campaign['status']})")
    return 0


def cmd_campaigns_action(args: argparse.Namespace) -> int:
    payload = {"reason": args.reason} if getattr(args, "reason", None) else {}
    answer = _console(args).post(f"campaigns/{args.id}/{args.action}", payload)
    _print(args, answer, f"campaign {answer['id']}: {answer['status']} ({answer['detail']})")
    return 0


def cmd_campaigns_watch(args: argparse.Namespace) -> int:
    console = _console(args)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    live = sys.stdout.isatty() and not args.json
    last = None
    while True:
        campaign = console.get(f"campaigns/{args.id}")
        line = render.progress_line(campaign)
        if args.json:
            if line != last:
                print(
                    dumps(
                        {
                            "id": campaign["id"],
                            "status": campaign["status"],
                            "counts": campaign.get("counts", {}),
                        }
                    ).replace("\n", " "),
                    flush=True,
                )
        elif live:
            print(f"\r\033[K{line}", end="", flush=True)
        elif line != last:
            print(line, flush=True)
        last = line
        if campaign["status"] in ENDED:
            if live:
                print()
            return EXIT_CANCELLED if campaign["status"] == "cancelled" else 0
        if deadline is not None and time.monotonic() >= deadline:
            if live:
                print()
            raise OtactlError(
                f"campaign {args.id} is still {campaign['status']} after {args.timeout:g} s",
                status=EXIT_TIMEOUT,
            )
        time.sleep(args.interval)


# -- diagnostics and audit --------------------------------------------------------------------


def cmd_diagnostics_send(args: argparse.Namespace) -> int:
    if bool(args.ecu) == bool(args.zone):
        raise OtactlError("give either --ecu or --zone")
    payload: dict[str, Any] = {
        "vin": args.vin,
        "service": args.service,
        "params": {k: _param_value(v) for k, v in _pairs(args.param, "--param").items()},
        "timeout_ms": args.timeout_ms,
    }
    payload.update({"ecu_id": args.ecu} if args.ecu else {"zone": args.zone})
    console = _console(args)
    sent = console.post("diagnostics/send", payload)
    result = sent
    if args.wait:
        deadline = time.monotonic() + args.timeout_ms / 1000 + 5
        while result.get("status") in ("pending", "sent") and time.monotonic() < deadline:
            time.sleep(0.5)
            result = console.get(f"diagnostics/results/{sent['request_id']}")
    human = f"request {result['request_id']}: {result.get('status')}"
    for answer in result.get("results", []):
        human += f"\n  {answer['ecu_id']}: {answer['outcome']} {answer.get('response_hex') or ''}"
    _print(args, result, human)
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    query = {
        "format": "json" if args.json else args.format,
        "since": args.since,
        "until": args.until,
        "vin": args.vin,
        "action": args.action,
    }
    response = _console(args).request("GET", "audit-events/export", query=query)
    if args.output:
        try:
            Path(args.output).write_bytes(response.body)
        except OSError as exc:
            raise OtactlError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {len(response.body)} bytes to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(response.body)
        sys.stdout.flush()
    return 0


# -- the parser -----------------------------------------------------------------------------------


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


def _page_query(args: argparse.Namespace) -> dict[str, Any]:
    return {"limit": args.limit, "offset": args.offset, "cursor": args.cursor}


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="otactl",
        parents=[common],
        description="Operate the OTA server over post-quantum TLS (X25519MLKEM768).",
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    def leaf(subparsers: Any, name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        sub = subparsers.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    login = leaf(groups, "login", cmd_login, "get an API token and store it")
    login.add_argument("--username", "-u")
    login.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of stdin")  # fmt: skip
    leaf(groups, "logout", cmd_logout, "revoke the stored token")

    vehicles = groups.add_parser("vehicles", help="the fleet").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    listing = leaf(vehicles, "list", cmd_vehicles_list, "list vehicles")
    listing.add_argument("--filter", "-f", action="append", metavar="KEY=VALUE",
                         help="a server filter, e.g. status=active (repeatable)")  # fmt: skip
    _paged(listing)
    leaf(vehicles, "show", cmd_vehicles_show, "one vehicle").add_argument("vin")

    firmware = groups.add_parser("firmware", help="firmware releases").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    listing = leaf(firmware, "list", cmd_firmware_list, "list releases")
    listing.add_argument("--ecu-type")
    listing.add_argument("--hardware-version")
    listing.add_argument("--version")
    listing.add_argument("--status", choices=["available", "deprecated"])
    _paged(listing)
    leaf(firmware, "show", cmd_firmware_show, "one release").add_argument("id", type=int)
    upload = leaf(firmware, "upload", cmd_firmware_upload, "upload an image")
    upload.add_argument("file")
    upload.add_argument("--ecu-type", required=True)
    upload.add_argument("--version", required=True)
    upload.add_argument("--hardware-versions", help="comma-separated, e.g. 2.0,2.1")
    upload.add_argument("--notes", help="release notes")
    leaf(firmware, "deprecate", cmd_firmware_deprecate, "withdraw a release").add_argument(
        "id", type=int
    )

    campaigns = groups.add_parser("campaigns", help="update campaigns").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    listing = leaf(campaigns, "list", cmd_campaigns_list, "list campaigns")
    listing.add_argument("--filter", "-f", action="append", metavar="KEY=VALUE")
    _paged(listing)
    create = leaf(campaigns, "create", cmd_campaigns_create, "create a draft campaign")
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
        sub = leaf(campaigns, name, cmd_campaigns_action, f"{name} a campaign")
        sub.add_argument("id", type=int)
        sub.set_defaults(action=name)
        if name == "pause":
            sub.add_argument("--reason")
    watch = leaf(campaigns, "watch", cmd_campaigns_watch, "show live progress until it ends")
    watch.add_argument("id", type=int)
    watch.add_argument("--interval", type=float, default=2.0, help="seconds between polls")
    watch.add_argument("--timeout", type=float, help="give up after this many seconds")

    diagnostics = groups.add_parser("diagnostics", help="remote diagnostics").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    send = leaf(diagnostics, "send", cmd_diagnostics_send, "send a UDS request")
    send.add_argument("--vin", required=True)
    send.add_argument("--ecu", help="ECU id, e.g. ECU_001")
    send.add_argument("--zone", help="zonal gateway id (functional request)")
    send.add_argument("--service", required=True, help='e.g. 0x22 or "ReadDataByIdentifier"')
    send.add_argument("--param", action="append", metavar="KEY=VALUE",
                      help='a service parameter, e.g. dids=["0xF190"] (JSON for lists)')  # fmt: skip
    send.add_argument("--timeout-ms", type=int, default=5000)
    send.add_argument("--wait", action="store_true", help="wait for the answers")

    audit = groups.add_parser("audit", help="the audit trail").add_subparsers(
        dest="command", required=True, metavar="COMMAND"
    )
    export = leaf(audit, "export", cmd_audit_export, "export the audit trail")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--since")
    export.add_argument("--until")
    export.add_argument("--vin")
    export.add_argument("--action", help="prefix, e.g. campaign.")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    return parser


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
