"""Two in-memory repositories and one vehicle's view of them, for the attack tests."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from uptane import metadata as md
from uptane.repository import Repository
from uptane.verifier import MemoryFetcher, PrimaryVerifier

IMAGE_URL = "https://ota.test/api/v1/uptane/image/"
DIRECTOR_URL = "https://ota.test/api/v1/uptane/director/"
ECUS = {"ECM-01": "ECM-HW-2.0", "BCM-01": "BCM-HW-1.0"}
IMAGE = b"ECM firmware 2.0.0 " * 100
IMAGE_PATH = "ECM/2.0.0"


@dataclass
class Fleet:
    image: Repository
    director: Repository
    fetcher: MemoryFetcher
    state_dir: Path

    def serve(self) -> None:
        self.fetcher.files = {**self.image.files, **self.director.files}

    def verifier(self, *, first_time: bool = True) -> PrimaryVerifier:
        self.serve()
        return PrimaryVerifier(
            state_dir=self.state_dir,
            image_url=IMAGE_URL,
            director_url=DIRECTOR_URL,
            fetcher=self.fetcher,
            ecus=ECUS,
            image_root=self.image.root_bytes() if first_time else None,
            director_root=self.director.root_bytes() if first_time else None,
        )

    def release(self, path: str = IMAGE_PATH, data: bytes = IMAGE, hardware: str = "ECM-HW-2.0"):
        target = md.image_target(
            path,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            ecu_type=path.split("/")[0],
            hardware_ids=[hardware],
        )
        self.image.publish_targets([target])
        self.image.publish_snapshot_and_timestamp()

    def direct(
        self,
        path: str = IMAGE_PATH,
        data: bytes = IMAGE,
        ecu_id: str = "ECM-01",
        hardware: str = "ECM-HW-2.0",
        **publish: object,
    ) -> None:
        target = md.director_target(
            path,
            length=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            ecus={ecu_id: hardware},
        )
        self.director.publish_targets([target], **publish)
        self.director.publish_snapshot_and_timestamp()


def new_fleet(tmp_path: Path) -> Fleet:
    fleet = Fleet(
        image=Repository.create(IMAGE_URL),
        director=Repository.create(DIRECTOR_URL),
        fetcher=MemoryFetcher({}),
        state_dir=tmp_path / "vehicle",
    )
    fleet.release()
    fleet.direct()
    return fleet
