"""Uptane on the reference vehicle: the primary's full verification over its PQC-TLS link.

The verifier itself is `uptane.verifier` (pure Python, no Django); this adapts it to the
vehicle's HTTPS client and ECUs. The trusted roots are provisioned at manufacture: the
files `image-root.json` and `director-root.json` in the roots directory, used the first
time only, after which the persisted (and rotated) roots are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from tuf.api.exceptions import DownloadError, DownloadHTTPError
from tuf.ngclient import FetcherInterface

from simulator.ecus import SimulatedEcu
from simulator.https import HttpsError, VehicleHttps
from uptane.verifier import PrimaryVerifier

IMAGE_PATH = "/api/v1/uptane/image/"
DIRECTOR_PATH = "/api/v1/uptane/director/"


class HttpsFetcher(FetcherInterface):
    """Metadata over the vehicle's mutual-TLS connection to the vehicle listener."""

    def __init__(self, api: VehicleHttps) -> None:
        self.api = api

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not self.api.serves(url):
            raise DownloadError(f"{url} is not this vehicle's server")
        try:
            response = self.api.request("GET", "/" + url.split("/", 3)[3])
        except HttpsError as exc:
            raise DownloadError(str(exc)) from exc
        if response.status != 200:
            raise DownloadHTTPError(f"GET {url}: {response.status}", response.status)
        return iter([response.body])


def hardware_ids(ecus: Mapping[str, SimulatedEcu]) -> dict[str, str]:
    """Each ECU's hardware id as both repositories name it: "<ECU type>/<hardware version>"."""
    return {ecu.ecu_id: f"{ecu.ecu_type}/{ecu.hw_version}" for ecu in ecus.values()}


def primary_verifier(
    api: VehicleHttps, *, state_dir: Path, ecus: Mapping[str, SimulatedEcu], roots_dir: Path
) -> PrimaryVerifier:
    base = f"https://{api.server_hostname}:{api.port}"

    def provisioned(name: str) -> bytes | None:
        path = roots_dir / f"{name}-root.json"
        return path.read_bytes() if path.exists() else None

    return PrimaryVerifier(
        state_dir=state_dir,
        image_url=base + IMAGE_PATH,
        director_url=base + DIRECTOR_PATH,
        fetcher=HttpsFetcher(api),
        ecus=hardware_ids(ecus),
        image_root=provisioned("image"),
        director_root=provisioned("director"),
    )
