"""Uptane metadata cost per update: bytes a vehicle downloads and time its primary spends
verifying them, for classical-only, hybrid and ML-DSA-only keys, against the OTAP-only path
of today (the zone package's signed header and its two signatures).

    .venv/bin/python bench/metadata.py                 # print
    .venv/bin/python bench/metadata.py --runs 20 --write

One update: the director names one image for one ECU, the image repository lists it. Bytes
are what a vehicle fetches per update cycle (timestamp, snapshot and targets of both
repositories; the roots once, shown apart). Verification is a full verification from a
fresh state directory: root, timestamp, snapshot and targets of both repositories with every
signature, plus the image agreement checks. All in memory, no network.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric import ec, mldsa  # noqa: E402
from securesystemslib.signer import Signer  # noqa: E402

from firmware.otap.format import SIGNATURE_BLOCK_SIZE, signed_size_for  # noqa: E402
from firmware.signing import HybridSigner, TrustSet, key_id  # noqa: E402
from uptane import keys  # noqa: E402
from uptane import metadata as md  # noqa: E402
from uptane.repository import Repository  # noqa: E402
from uptane.verifier import MemoryFetcher, PrimaryVerifier  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "metadata.md"
IMAGE_URL = "https://ota.bench/image/"
DIRECTOR_URL = "https://ota.bench/director/"
IMAGE = b"\x5a" * 4096
ECUS = {"ECU_001": "ECM/2.0"}
PER_UPDATE = ("timestamp.json", "snapshot.json", "targets.json")


def _classical(role: str) -> list[Signer]:
    return [keys.generate_signer(keys.ECDSA_P256)]


def _mldsa_only(role: str) -> list[Signer]:
    return [keys.generate_signer(keys.ML_DSA_87 if role == "root" else keys.ML_DSA_65)]


CONFIGURATIONS: dict[str, tuple[Callable[[str], list[Signer]], bool]] = {
    "classical (ECDSA-P256, threshold 1)": (_classical, False),
    "hybrid (ECDSA-P256 + ML-DSA-65/87, threshold 2)": (keys.generate_role_signers, True),
    "ML-DSA only (ML-DSA-65/87, threshold 1)": (_mldsa_only, False),
}


def _repositories(factory: Callable[[str], list[Signer]], hybrid: bool) -> dict[str, bytes]:
    image = Repository.create(IMAGE_URL, key_factory=factory, hybrid=hybrid)
    director = Repository.create(DIRECTOR_URL, key_factory=factory, hybrid=hybrid)
    sha = hashlib.sha256(IMAGE).hexdigest()
    image.publish_targets(
        [
            md.image_target(
                "ECM/2.0.0", length=len(IMAGE), sha256=sha, ecu_type="ECM", hardware_ids=["ECM/2.0"]
            )
        ]
    )
    image.publish_snapshot_and_timestamp()
    director.publish_targets(
        [
            md.director_target(
                "ECM/2.0.0", length=len(IMAGE), sha256=sha, ecus={"ECU_001": "ECM/2.0"}
            )
        ],
        expires=md.now() + dt.timedelta(days=7),
    )
    director.publish_snapshot_and_timestamp()
    return {**image.files, **director.files}


def _verify_once(files: dict[str, bytes], hybrid: bool) -> float:
    with tempfile.TemporaryDirectory() as state:
        verifier = PrimaryVerifier(
            state_dir=Path(state),
            image_url=IMAGE_URL,
            director_url=DIRECTOR_URL,
            fetcher=MemoryFetcher(files),
            ecus=ECUS,
            image_root=files[IMAGE_URL + "1.root.json"],
            director_root=files[DIRECTOR_URL + "1.root.json"],
            require_hybrid=hybrid,
        )
        start = time.perf_counter()
        approved = verifier.refresh()
        elapsed = time.perf_counter() - start
    assert len(approved) == 1
    return elapsed


def _otap_reference() -> tuple[int, Callable[[], float]]:
    """Bytes of a one-ECU zone package's signed header and signatures, and a timer of the
    check of both signatures (the hash of the image itself is left out on both sides)."""
    mldsa_key = mldsa.MLDSA65PrivateKey.generate()
    ecdsa_key = ec.generate_private_key(ec.SECP256R1())
    signer = HybridSigner("bench", mldsa_key, ecdsa_key)
    trust = TrustSet([mldsa_key.public_key()], [ecdsa_key.public_key()])
    header = b"\x01" * signed_size_for(1)
    mldsa_sig, ecdsa_sig = signer.sign_manifest(header, context=b"OTAP")

    def verify_once() -> float:
        start = time.perf_counter()
        trust.verify_manifest(
            header,
            context=b"OTAP",
            mldsa_key_id=key_id(mldsa_key.public_key()),
            mldsa_signature=mldsa_sig,
            ecdsa_key_id=key_id(ecdsa_key.public_key()),
            ecdsa_signature=ecdsa_sig,
        )
        return time.perf_counter() - start

    return signed_size_for(1) + SIGNATURE_BLOCK_SIZE, verify_once


def run(runs: int) -> str:
    otap_bytes, otap_verify = _otap_reference()
    repositories = {
        name: (_repositories(factory, hybrid), hybrid)
        for name, (factory, hybrid) in CONFIGURATIONS.items()
    }
    # Round robin, so that load from elsewhere on the machine hits every configuration alike.
    times: dict[str, list[float]] = {name: [] for name in ["otap", *repositories]}
    for _ in range(runs):
        times["otap"].append(otap_verify())
        for name, (files, hybrid) in repositories.items():
            times[name].append(_verify_once(files, hybrid))
    otap_seconds = statistics.median(times["otap"])
    rows = []
    for name, (files, _hybrid) in repositories.items():
        per_update = sum(
            len(files[base + f]) for base in (IMAGE_URL, DIRECTOR_URL) for f in PER_UPDATE
        )
        roots = len(files[IMAGE_URL + "1.root.json"]) + len(files[DIRECTOR_URL + "1.root.json"])
        seconds = statistics.median(times[name])
        rows.append(
            f"| {name} | {per_update:,} | {per_update / otap_bytes:.1f}x | {roots:,} | "
            f"{seconds * 1000:.2f} | {seconds / otap_seconds:.0f}x |"
        )
    header = (
        "# Uptane metadata per update\n\n"
        f"`python bench/metadata.py --runs {runs} --write`: one update of one ECU; bytes are "
        "the six files a vehicle fetches per update cycle (timestamp, snapshot and targets of "
        "the image repository and the director), roots are fetched once; verification is the "
        "median of a full verification from an empty state directory (both roots, every role, "
        "every signature, the image agreement checks) in python-tuf's client workflow, the "
        "configurations taking turns run by run. The reference is today's OTAP-only path: "
        f"{otap_bytes:,} bytes of signed package header and signature block for a one-ECU zone "
        f"package, both signatures checked in {otap_seconds * 1000:.3f} ms.\n\n"
        "| keys | bytes per update | vs OTAP | root bytes (both) | verify ms | vs OTAP |\n"
        "|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    report = run(max(1, min(args.runs, 200)))
    print(report)
    if args.write:
        RESULTS.write_text(report)


if __name__ == "__main__":
    main()
