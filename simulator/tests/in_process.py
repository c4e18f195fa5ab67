"""The vehicle's HTTPS client routed to Django's test client: agent tests without sockets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from conftest import vehicle_api_client
from firmware.signing import load_trust_set
from pqc.catalogue import get_configuration
from pqc.client import ClientCredentials
from simulator.ecus import load_build_sheet
from simulator.https import ConnectionCut, Response, VehicleHttps
from simulator.ota import AgentOptions, OtaAgent

VIN = "WVWZZZ1JZ3W386752"


@dataclass
class InProcessHttps(VehicleHttps):
    """Answers every request in-process, as the vehicle listener would for `vin`."""

    vin: str = ""
    fingerprint: str = "f" * 64

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        cut_after: int | None = None,
    ) -> Response:
        client = vehicle_api_client(self.vin, cert_fingerprint=self.fingerprint)
        meta = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
        if method == "GET":
            answer = client.get(path, **meta)
        else:
            answer = getattr(client, method.lower())(path, json, format="json", **meta)
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        if cut_after is not None and cut_after < len(body):
            raise ConnectionCut(body[:cut_after])
        return Response(
            status=answer.status_code,
            headers={k.lower(): v for k, v in answer.items()},
            body=body,
        )

    def close(self) -> None:
        pass


def make_agent(tmp_path: Path, keys: Path, **options) -> OtaAgent:
    api = InProcessHttps(
        host="localhost",
        port=8443,
        config=get_configuration(1),
        credentials=ClientCredentials(ca=tmp_path / "unused.pem"),
        vin=VIN,
    )
    return OtaAgent(
        vin=VIN,
        api=api,
        trust=load_trust_set(keys),
        ecus=load_build_sheet(Path(settings.ECU_REGISTRY_FILE), VIN),
        state_dir=tmp_path / "vehicle",
        options=AgentOptions(**options),
    )
