"""What each otactl command does; failures raise OtactlError (one line, see cli.main)."""

from __future__ import annotations

import argparse
import getpass
import hashlib
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


def _page_query(args: argparse.Namespace) -> dict[str, Any]:
    return {"limit": args.limit, "offset": args.offset, "cursor": args.cursor}


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

VEHICLE_COLUMNS = [
    "vin",
    "model_name",
    "model_year",
    "status",
    "is_online",
    "tls_group",
    "last_seen_at",
]


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


def cmd_firmware_download(args: argparse.Namespace) -> int:
    console = _console(args)
    release = console.get(f"firmware/{args.id}")
    dest = Path(args.output or f"{release['ecu_type']}-{release['version']}.bin")
    partial = dest.with_name(dest.name + ".part")
    try:
        fh = partial.open("wb")
    except OSError as exc:
        raise OtactlError(f"cannot write {partial}: {exc.strerror or exc}") from None
    try:
        with fh:
            hasher = _HashingWriter(fh)
            size = console.download(f"firmware/{args.id}/image", hasher)
        if hasher.hexdigest() != release["sha256"]:
            raise OtactlError(f"{dest}: SHA-256 does not match the release; not kept")
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    result = {"id": release["id"], "path": str(dest), "size": size, "sha256": release["sha256"]}
    _print(args, result, f"wrote {size} bytes to {dest} (SHA-256 verified)")
    return 0


class _HashingWriter:
    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.fh.write(data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def cmd_firmware_deprecate(args: argparse.Namespace) -> int:
    release = _console(args).post(f"firmware/{args.id}/deprecate")
    _print(
        args,
        release,
        f"firmware {release['id']} ({release['ecu_type']} {release['version']}) is {release['status']}",
    )
    return 0


# -- campaigns ------------------------------------------------------------------------------------

CAMPAIGN_COLUMNS = ["id", "name", "status", "current_wave", "created_at", "finished_at"]


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
