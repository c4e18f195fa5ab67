"""An operator's client of the console API over PQC-TLS, for fleet drills and the benchmark:
log in, upload firmware, create and start a campaign, read its counts, send diagnostics."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pqc.catalogue import get_configuration, load_catalogue
from pqc.client import ClientCredentials, HttpResponse, https_request

# ML-KEM-768 with an ECDSA-P256 server certificate: what the console offers every client.
CONSOLE_CONFIG = 1
CATALOGUE = Path(__file__).resolve().parents[2] / "config" / "pqc_configs.yaml"


class ConsoleError(RuntimeError):
    pass


class Console:
    def __init__(self, host: str, port: int, ca_bundle: Path, token: str = "") -> None:
        self.host = host
        self.port = port
        self.token = token
        self.connect = {
            "config": get_configuration(CONSOLE_CONFIG, load_catalogue(CATALOGUE)),
            "credentials": ClientCredentials(ca=ca_bundle),
            "server_hostname": "localhost",
            # A server busy with thousands of vehicles answers an operator slowly, not never.
            "timeout": 120.0,
        }

    def request(self, method: str, path: str, **kwargs: Any) -> HttpResponse:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        return https_request(
            self.host, self.port, method, path, headers=headers, **kwargs, **self.connect
        )

    def json(self, method: str, path: str, *, expect: int = 200, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status != expect:
            raise ConsoleError(f"{method} {path}: HTTP {response.status} {response.body[:300]!r}")
        return response.json() if response.body else None

    def login(self, username: str, password: str) -> None:
        answer = self.json(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}
        )
        self.token = answer["token"]

    def upload(self, ecu_type: str, version: str, image: bytes, hardware: str) -> dict:
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for name, value in (
            ("ecu_type", ecu_type),
            ("version", version),
            ("hardware_versions", hardware),
        ):
            body.write(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                f"{value}\r\n".encode()
            )
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{ecu_type}-{version}.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        body.write(image + f"\r\n--{boundary}--\r\n".encode())
        return self.json(
            "POST",
            "/api/v1/firmware/upload",
            expect=201,
            body=body.getvalue(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    def start_campaign(self, **fields: Any) -> int:
        campaign = self.json("POST", "/api/v1/campaigns", expect=201, json=fields)
        self.json("POST", f"/api/v1/campaigns/{campaign['id']}/start", expect=202)
        return campaign["id"]

    def campaign(self, campaign_id: int) -> dict:
        return self.json("GET", f"/api/v1/campaigns/{campaign_id}")

    def wait_campaign(
        self,
        campaign_id: int,
        until: Callable[[dict], bool],
        *,
        timeout: float,
        every: float = 1.0,
        on_poll: Callable[[dict], None] = lambda detail: None,
    ) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            detail = self.campaign(campaign_id)
            on_poll(detail)
            if until(detail):
                return detail
            if time.monotonic() > deadline:
                raise ConsoleError(f"campaign {campaign_id} after {timeout:.0f} s: {detail}")
            time.sleep(every)
