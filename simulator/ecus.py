"""Simulated ECUs behind zonal gateways: identity, running software and enough UDS (ISO 14229)
to exercise the remote console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Negative response codes used below (ISO 14229-1 annex A).
SERVICE_NOT_SUPPORTED = 0x11
SUBFUNCTION_NOT_SUPPORTED = 0x12
INCORRECT_LENGTH = 0x13
CONDITIONS_NOT_CORRECT = 0x22
REQUEST_OUT_OF_RANGE = 0x31
INVALID_KEY = 0x35

SECURITY_SEED = bytes.fromhex("1a2b3c4d")


def _negative(sid: int, nrc: int) -> bytes:
    return bytes([0x7F, sid, nrc])


def _expected_key(seed: bytes) -> bytes:
    # A toy seed/key algorithm; real ECUs keep theirs secret.
    return bytes(b ^ 0xA5 for b in seed)


@dataclass
class SimulatedEcu:
    ecu_id: str
    vin: str
    sw_version: str = "1.0.0"
    hw_version: str = "1.0"
    ecu_type: str = ""
    zone: str = ""
    supplier: str = ""
    # SHA-256 of the image the ECU runs ("" until an update installed one).
    image_sha256: str = ""
    session: int = 1
    unlocked: bool = False
    dtcs: list[tuple[int, int]] = field(default_factory=lambda: [(0x012345, 0x09)])
    data: dict[int, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data.setdefault(0xF190, self.vin.encode())
        self.data.setdefault(0xF194, self.sw_version.encode())

    @property
    def part_number(self) -> str:
        return f"PN-{self.ecu_type or 'ECU'}-{self.hw_version}"

    @property
    def serial_number(self) -> str:
        return f"SN-{self.vin[-6:]}-{self.ecu_id}"

    def run_version(self, version: str, image_sha256: str = "") -> None:
        """Boot into `version` (what an update or a fallback leaves running)."""
        self.sw_version = version
        self.image_sha256 = image_sha256
        self.data[0xF194] = version.encode()

    def vci_entry(self) -> dict[str, str]:
        """This ECU in a configuration report (VCI)."""
        return {
            "ecu_id": self.ecu_id,
            "sw_version": self.sw_version,
            "hw_version": self.hw_version,
            "part_number": self.part_number,
            "supplier": self.supplier,
            "serial_number": self.serial_number,
        }

    def handle(self, request: bytes) -> bytes | None:
        """The ECU's response bytes, or None when it suppresses the positive response."""
        if not request:
            return None
        sid, body = request[0], request[1:]
        handler = {
            0x10: self._session,
            0x11: self._reset,
            0x14: self._clear,
            0x19: self._read_dtc,
            0x22: self._read,
            0x27: self._security,
            0x2E: self._write,
            0x31: self._routine,
            0x3E: self._tester_present,
        }.get(sid)
        if handler is None:
            return _negative(sid, SERVICE_NOT_SUPPORTED)
        return handler(sid, body)

    def _session(self, sid: int, body: bytes) -> bytes:
        if len(body) != 1:
            return _negative(sid, INCORRECT_LENGTH)
        if body[0] not in (1, 2, 3):
            return _negative(sid, SUBFUNCTION_NOT_SUPPORTED)
        self.session = body[0]
        self.unlocked = False
        return bytes([0x50, body[0], 0x00, 0x32, 0x01, 0xF4])

    def _reset(self, sid: int, body: bytes) -> bytes:
        if len(body) != 1 or body[0] not in (1, 2, 3):
            return _negative(sid, SUBFUNCTION_NOT_SUPPORTED)
        self.session, self.unlocked = 1, False
        return bytes([0x51, body[0]])

    def _clear(self, sid: int, body: bytes) -> bytes:
        if len(body) != 3:
            return _negative(sid, INCORRECT_LENGTH)
        self.dtcs = []
        return bytes([0x54])

    def _read_dtc(self, sid: int, body: bytes) -> bytes:
        if not body:
            return _negative(sid, INCORRECT_LENGTH)
        sub = body[0]
        if sub == 0x01 and len(body) == 2:
            count = sum(1 for _, status in self.dtcs if status & body[1])
            return bytes([0x59, 0x01, 0xFF, 0x01]) + count.to_bytes(2, "big")
        if sub == 0x02 and len(body) == 2:
            records = b"".join(
                code.to_bytes(3, "big") + bytes([status])
                for code, status in self.dtcs
                if status & body[1]
            )
            return bytes([0x59, 0x02, 0xFF]) + records
        if sub == 0x0A:
            records = b"".join(code.to_bytes(3, "big") + bytes([s]) for code, s in self.dtcs)
            return bytes([0x59, 0x0A, 0xFF]) + records
        return _negative(sid, SUBFUNCTION_NOT_SUPPORTED)

    def _read(self, sid: int, body: bytes) -> bytes:
        if not body or len(body) % 2:
            return _negative(sid, INCORRECT_LENGTH)
        out = bytearray([0x62])
        for i in range(0, len(body), 2):
            did = int.from_bytes(body[i : i + 2], "big")
            if did not in self.data:
                return _negative(sid, REQUEST_OUT_OF_RANGE)
            out += body[i : i + 2] + self.data[did]
        return bytes(out)

    def _security(self, sid: int, body: bytes) -> bytes:
        if not body:
            return _negative(sid, INCORRECT_LENGTH)
        level = body[0]
        if level % 2:
            return bytes([0x67, level]) + SECURITY_SEED
        if body[1:] != _expected_key(SECURITY_SEED):
            return _negative(sid, INVALID_KEY)
        self.unlocked = True
        return bytes([0x67, level])

    def _write(self, sid: int, body: bytes) -> bytes:
        if len(body) < 3:
            return _negative(sid, INCORRECT_LENGTH)
        if self.session == 1:
            return _negative(sid, CONDITIONS_NOT_CORRECT)
        did = int.from_bytes(body[:2], "big")
        self.data[did] = body[2:]
        return bytes([0x6E]) + body[:2]

    def _routine(self, sid: int, body: bytes) -> bytes:
        if len(body) < 3 or body[0] not in (1, 2, 3):
            return _negative(sid, SUBFUNCTION_NOT_SUPPORTED)
        routine = int.from_bytes(body[1:3], "big")
        if not 0xF001 <= routine <= 0xF004:
            return _negative(sid, REQUEST_OUT_OF_RANGE)
        return bytes([0x71]) + body[:3] + b"\x00"

    def _tester_present(self, sid: int, body: bytes) -> bytes | None:
        if len(body) != 1 or body[0] & 0x7F:
            return _negative(sid, SUBFUNCTION_NOT_SUPPORTED)
        return None if body[0] & 0x80 else bytes([0x7E, 0x00])


def answers(ecu_id: str, rule: str) -> bool:
    """Whether an ECU answers under `rule`: "all", "none", "odd", "even" or a comma list of ids."""
    if rule == "all":
        return True
    if rule == "none":
        return False
    number = int("".join(ch for ch in ecu_id if ch.isdigit()) or 0)
    if rule == "odd":
        return number % 2 == 1
    if rule == "even":
        return number % 2 == 0
    return ecu_id in {item.strip() for item in rule.split(",")}


SUPPLIERS = ("Bosch", "Continental", "Denso", "Aptiv", "ZF", "Valeo")


def read_build_sheet(path: Path) -> list[dict]:
    """The fleet ECU registry file's ECU entries, read without Django."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))["ecus"]


def build_ecus(entries: list[dict], vin: str) -> dict[str, SimulatedEcu]:
    """One vehicle's ECUs as built from registry entries (see `read_build_sheet`).

    Each ECU starts on the registry's default software version, which is also what the server
    assumes for a newly registered vehicle.
    """
    ecus = {}
    for index, entry in enumerate(entries):
        ecus[entry["ecu_id"]] = SimulatedEcu(
            ecu_id=entry["ecu_id"],
            vin=vin,
            sw_version=str(entry["default_sw_version"]),
            hw_version=str(entry["hardware_version"]),
            ecu_type=entry["type"],
            zone=entry["zone"],
            supplier=SUPPLIERS[index % len(SUPPLIERS)],
        )
    return ecus


def load_build_sheet(path: Path, vin: str) -> dict[str, SimulatedEcu]:
    """The vehicle's ECUs as built: the fleet ECU registry file, read without Django."""
    return build_ecus(read_build_sheet(path), vin)
