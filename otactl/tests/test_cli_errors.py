"""otactl's argument and error handling, without a server: one line on stderr, non-zero exit."""

from __future__ import annotations

import json
import socket
import stat
from pathlib import Path

import pytest

from otactl import cli, commands, render
from otactl.console import Console
from otactl.settings import resolve, write_config
from pqc.client import HttpResponse, read_response_head


@pytest.fixture(autouse=True)
def _own_config(monkeypatch, tmp_path: Path) -> Path:
    path = tmp_path / "otactl" / "config.json"
    monkeypatch.setenv("OTACTL_CONFIG", str(path))
    for name in ("OTACTL_URL", "OTACTL_CA", "OTACTL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    from pqc.pki import FleetPki

    pki = FleetPki(tmp_path / "pki")
    pki.init(hostnames=["localhost"])
    return pki.ca_bundle_path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert err.startswith("otactl: ")
    return err.strip()


def test_without_a_token_it_says_to_log_in(capsys) -> None:
    status, _, err = _run(capsys, "firmware", "list")
    assert status == 1
    assert _one_line(err).endswith("run otactl login")


def test_a_url_that_is_not_https_is_refused_naming_the_option(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    status, _, err = _run(capsys, "--url", "http://example.org", "firmware", "list")
    assert status == 1
    assert "--url: 'http://example.org' is not an https://host:port URL" in _one_line(err)


def test_a_missing_ca_bundle_says_which_file_and_how_to_give_one(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    status, _, err = _run(capsys, "--ca", str(tmp_path / "nope.pem"), "vehicles", "list")
    assert status == 1
    assert "nope.pem not found: pass --ca or set OTACTL_CA" in _one_line(err)


def test_a_file_that_holds_no_certificate_is_named(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    status, _, err = _run(capsys, "--ca", str(junk), "vehicles", "list")
    assert status == 1
    assert "junk.pem is not usable: no certificate or crl found" in _one_line(err)


def test_connection_refused_is_one_line(capsys, monkeypatch, ca) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    status, _, err = _run(capsys, "--url", url, "--ca", str(ca), "campaigns", "list")
    assert status == 1
    assert _one_line(err) == f"otactl: cannot connect to {url}: connection refused"


def test_a_filter_without_a_value_is_refused_before_connecting(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    status, _, err = _run(capsys, "vehicles", "list", "--filter", "status")
    assert status == 1
    assert "--filter: 'status' is not KEY=VALUE" in _one_line(err)


def test_diagnostics_needs_an_ecu_or_a_zone(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    status, _, err = _run(capsys, "diagnostics", "send", "--vin", "V", "--service", "0x22")
    assert status == 1
    assert "give either --ecu or --zone" in _one_line(err)


def test_a_missing_required_option_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["firmware", "upload", "image.bin", "--version", "1.0.0"])
    assert exited.value.code == 2
    assert "--ecu-type" in capsys.readouterr().err


def test_the_config_file_is_private(_own_config: Path) -> None:
    write_config({"token": "secret"})
    assert stat.S_IMODE(_own_config.stat().st_mode) == 0o600
    assert json.loads(_own_config.read_text()) == {"token": "secret"}


def test_flags_beat_the_environment_which_beats_the_config_file(monkeypatch) -> None:
    write_config({"url": "https://stored:1", "ca": "stored.pem", "token": "stored"})
    assert resolve(url=None, ca=None).url == "https://stored:1"
    monkeypatch.setenv("OTACTL_URL", "https://env:2")
    monkeypatch.setenv("OTACTL_TOKEN", "env")
    target = resolve(url=None, ca=None)
    assert (target.url, str(target.ca), target.token) == ("https://env:2", "stored.pem", "env")
    assert resolve(url="https://flag:3", ca=None).url == "https://flag:3"


def _answer(status: int, body: object, **headers: str) -> HttpResponse:
    return HttpResponse(status=status, headers=headers, body=json.dumps(body).encode())


def test_an_api_error_names_each_field(capsys, monkeypatch, ca) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    error = {"error": {"code": "invalid", "message": "invalid input",
                       "fields": {"firmware_ids": ["firmware 7 is deprecated"]}}}  # fmt: skip
    monkeypatch.setattr("otactl.console.https_request", lambda *a, **k: _answer(400, error))
    status, _, err = _run(
        capsys, "--ca", str(ca), "campaigns", "create", "--name", "x", "--firmware", "7"
    )
    assert status == 1
    assert _one_line(err) == "otactl: HTTP 400: firmware_ids: firmware 7 is deprecated"


def test_a_401_says_to_log_in_again(capsys, monkeypatch, ca) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    body = {"error": {"code": "authentication_failed", "message": "Invalid token.", "fields": {}}}
    monkeypatch.setattr("otactl.console.https_request", lambda *a, **k: _answer(401, body))
    status, _, err = _run(capsys, "--ca", str(ca), "firmware", "show", "3")
    assert status == 1
    assert _one_line(err).endswith("run otactl login")


def test_a_wrong_password_at_login_is_not_told_to_log_in(capsys, monkeypatch, ca) -> None:
    body = {"error": {"code": "authentication_failed", "message": "wrong username or password",
                      "fields": {}}}  # fmt: skip
    monkeypatch.setattr("otactl.console.https_request", lambda *a, **k: _answer(401, body))
    monkeypatch.setattr("sys.stdin", _Lines("bad\n"))
    status, _, err = _run(capsys, "--ca", str(ca), "login", "-u", "o", "--password-stdin")
    assert status == 1
    assert _one_line(err) == "otactl: HTTP 401: wrong username or password"


class _Lines:
    def __init__(self, text: str) -> None:
        self.text = text

    def readline(self) -> str:
        return self.text


def test_every_request_offers_only_the_hybrid_group_and_checks_the_host(monkeypatch, ca):
    seen = {}

    def fake(host, port, method, path, **kwargs):
        seen.update(kwargs, host=host, path=path)
        return _answer(200, {"count": 0, "next": None, "results": []})

    monkeypatch.setattr("otactl.console.https_request", fake)
    Console(resolve(url="https://localhost:9", ca=str(ca), token="t")).get("firmware", limit=5)
    assert seen["groups"] == ["X25519MLKEM768"]
    assert seen["server_hostname"] == "localhost"
    assert seen["path"] == "/api/v1/firmware?limit=5"
    assert seen["headers"]["Authorization"] == "Token t"


def test_watch_ends_with_the_campaign_and_gives_up_after_its_timeout(capsys, monkeypatch, ca):
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    states = iter(
        [
            {"id": 4, "status": "running", "counts": {"queued": 2}},
            {"id": 4, "status": "running", "counts": {"succeeded": 1, "offered": 1}},
            {"id": 4, "status": "completed", "counts": {"succeeded": 1, "failed": 1}},
        ]
    )
    monkeypatch.setattr(Console, "get", lambda self, path, **q: next(states))
    status, out, _ = _run(capsys, "--ca", str(ca), "campaigns", "watch", "4", "--interval", "0")
    assert status == 0
    lines = out.splitlines()
    assert [line.split("]")[1].split("vehicles")[0].strip() for line in lines] == [
        "0.0% 0/2",
        "50.0% 1/2",
        "100.0% 2/2",
    ]
    running = {"id": 4, "status": "paused", "counts": {"queued": 1}}
    monkeypatch.setattr(Console, "get", lambda self, path, **q: running)
    status, _, err = _run(
        capsys, "--ca", str(ca), "campaigns", "watch", "4", "--interval", "0", "--timeout", "0.01"
    )
    assert status == commands.EXIT_TIMEOUT
    assert _one_line(err) == "otactl: campaign 4 is still paused after 0.01 s"


def test_the_page_footer_names_the_option_for_the_next_page() -> None:
    by_cursor = {"count": 3, "next": "https://h/api/v1/vehicles?cursor=abc&limit=1",
                 "results": [{}]}  # fmt: skip
    assert render.page_footer(by_cursor) == "1 of 3; next page: --cursor abc"
    by_offset = {"count": 3, "next": "https://h/api/v1/firmware?limit=2&offset=2",
                 "results": [{}, {}]}  # fmt: skip
    assert render.page_footer(by_offset) == "2 of 3; next page: --offset 2"
    assert render.page_footer({"count": 1, "next": None, "results": [{}]}) == "1 of 1"


def test_diagnostics_params_take_json_lists_and_refuse_broken_json(capsys, monkeypatch, ca):
    monkeypatch.setenv("OTACTL_TOKEN", "t")
    sent = {}

    def post(self, path, payload=None):
        sent.update(payload)
        return {"request_id": "r1", "status": "sent", "results": []}

    monkeypatch.setattr(Console, "post", post)
    argv = ["--ca", str(ca), "diagnostics", "send", "--vin", "V", "--ecu", "ECU_001",
            "--service", "0x22", "--param", 'dids=["0xF190"]', "--param", "level=1"]  # fmt: skip
    status, out, _ = _run(capsys, *argv)
    assert status == 0 and "request r1: sent" in out
    assert sent["params"] == {"dids": ["0xF190"], "level": "1"}
    status, _, err = _run(capsys, *argv[:-2], "--param", "dids=[0xF190")
    assert status == 1
    assert "--param: '[0xF190' is not valid JSON" in _one_line(err)


def test_tables_align_columns_and_show_missing_values_as_a_dash() -> None:
    rows = [{"id": 7, "version": "2.0.0", "hardware_versions": ["2.0", "2.1"]}, {"id": 12}]
    assert render.table(rows, ["id", "version", "hardware_versions"]).splitlines() == [
        "ID  VERSION  HARDWARE_VERSIONS",
        "7   2.0.0    2.0,2.1",
        "12  -        -",
    ]


def test_a_peer_that_does_not_speak_http_is_one_line(capsys, monkeypatch, ca) -> None:
    monkeypatch.setenv("OTACTL_TOKEN", "t")

    class NotHttp:
        def recv(self, size: int = 0) -> bytes:
            return b"SSH-2.0-OpenSSH_9.2\r\n\r\n"

    def garbled(*args, **kwargs):
        return read_response_head(NotHttp())  # the client's own parser meets a non-HTTP peer

    monkeypatch.setattr("otactl.console.https_request", garbled)
    status, _, err = _run(capsys, "--url", "https://localhost:22", "--ca", str(ca), "audit",
                          "export")  # fmt: skip
    assert status == 1
    assert _one_line(err) == "otactl: https://localhost:22 did not answer in HTTP"
