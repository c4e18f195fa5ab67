"""``python -m firmware.otap verify PACKAGE --trust KEYS``: the vehicle-side verifier."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from firmware.otap.format import COMPRESSION_NAMES, OtapError, Package
from firmware.otap.reader import extract_package, verify_package


def describe(package: Package) -> str:
    """Human-readable summary of a parsed package."""
    lines = [
        f"zonal gateway   {package.zonal_gateway_id}",
        f"package version {package.package_version}",
        f"created         {package.created_at.isoformat()}",
        f"expires         {package.expires_at.isoformat()}",
        f"size            {package.total_size} bytes",
        f"ML-DSA-65 key   {package.mldsa_key_id.hex()}",
        f"ECDSA-P256 key  {package.ecdsa_key_id.hex()}",
    ]
    for entry in package.entries:
        kind = (
            f"delta {entry.delta_algorithm.label} from {entry.delta_base_version}"
            if entry.is_delta
            else COMPRESSION_NAMES[entry.compression]
        )
        lines.append(
            f"  {entry.ecu_id:<16} {entry.current_version or '-':>12} -> "
            f"{entry.target_version:<12} {entry.image_size:>12} B  stored {entry.stored_size} B"
            f" ({kind})  sha256 {entry.image_sha256.hex()}"
        )
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: Callable[[str], None] = print,
    now: dt.datetime | None = None,
) -> int:
    """``python -m firmware.otap verify PACKAGE --trust KEYS [...]``; returns an exit code."""
    from firmware.signing import SigningError, load_trust_set

    parser = argparse.ArgumentParser(prog="python -m firmware.otap")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check structure, hashes and both signatures")
    verify.add_argument("package", type=Path)
    verify.add_argument("--trust", type=Path, required=True, help="PEM bundle or directory")
    verify.add_argument(
        "--installed-version",
        type=int,
        default=None,
        help="package_version installed now; only a newer package is accepted",
    )
    verify.add_argument("--extract", type=Path, default=None, help="write images to DIR")
    verify.add_argument("--base", type=Path, default=None, help="current images for deltas")
    args = parser.parse_args(argv)
    try:
        trust = load_trust_set(args.trust)
        with args.package.open("rb") as fh:
            if args.extract is not None:
                extract_package(
                    fh,
                    args.extract,
                    trust=trust,
                    base_dir=args.base,
                    installed_package_version=args.installed_version,
                    now=now,
                )
                fh.seek(0)
            package = verify_package(
                fh, trust=trust, installed_package_version=args.installed_version, now=now
            )
    except (OtapError, SigningError) as exc:
        print(f"REJECTED: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"REJECTED: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    stdout(describe(package))
    stdout("OK: structure, data hashes, ML-DSA-65 and ECDSA-P256 signatures verified")
    return 0
