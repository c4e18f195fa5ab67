"""The vehicle's update agent: check, download, verify, install, reboot, prove (docs/API.md).

It speaks only the documented protocol: REST over PQC-TLS (`simulator.https`) and, when told
to, OTA status over MQTT. Packages are verified with the reference OTAP verifier
(`firmware.otap`, pure Python, no Django) against the fleet's trusted signing keys.

Failure modes for demonstrations and tests (`AgentOptions.fail`):

* ``verify``: the downloaded package is corrupted before verification, so the verifier
  refuses it; the vehicle reports ERROR and the update fails.
* ``install``: flashing fails; the vehicle reports ERROR without new versions; it fails.
* ``boot``: the new software does not boot and the bootloader falls back to the previous
  bank; the vehicle reports ERROR with ``rolled_back`` and the old running versions, and its
  next VCI shows them: the update is rolled back.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.otap import OtapError, TrustSet, extract_package, verify_package
from firmware.signing import SigningError
from simulator.ecus import SimulatedEcu
from simulator.https import RANGE_CHUNK, HttpsError, VehicleHttps, possession_proof
from uptane.verifier import PrimaryVerifier, check_packages

logger = logging.getLogger("simulator.ota")

# VMG state codes (docs/API.md).
IDLE, DOWNLOADING, VERIFYING, INSTALLING, READY, ERROR, COMPLETED = range(7)
FAILURE_MODES = ("none", "verify", "install", "boot")


@dataclass
class AgentOptions:
    fail: str = "none"
    # How many update attempts the failure mode spoils; later attempts behave.
    fail_times: int = 1
    # "auto": reboot as soon as the update is installed; "command": wait for `activate`.
    activation: str = "auto"
    # Where status reports go: "rest" (POST /api/v1/ota/status) or "mqtt".
    status_via: str = "rest"
    # Drop the connection once when a download passes this byte, to exercise resuming.
    cut_download_at: int | None = None
    chunk_size: int = RANGE_CHUNK
    # A run that found the server unavailable (its own HTTP retries used up) starts again this
    # many times, after these many seconds doubling up to a minute: the offer is still there.
    run_retries: int = 6
    run_retry_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.fail not in FAILURE_MODES:
            raise ValueError(f"fail: one of {', '.join(FAILURE_MODES)}")
        if self.activation not in ("auto", "command"):
            raise ValueError("activation: auto or command")
        if self.status_via not in ("rest", "mqtt"):
            raise ValueError("status_via: rest or mqtt")


@dataclass
class UpdateOutcome:
    update_id: int | None
    result: str  # none, ready, succeeded, failed, rolled_back, stopped
    detail: str = ""
    running: dict[str, str] = field(default_factory=dict)


# No answer at all (0) or a server that says it is unavailable.
UNAVAILABLE = (0, 502, 503, 504)


class StopUpdate(Exception):
    """The server cancelled the update (or refused our report); stop without reporting."""


@dataclass
class OtaAgent:
    vin: str
    api: VehicleHttps
    trust: TrustSet
    ecus: dict[str, SimulatedEcu]
    state_dir: Path
    options: AgentOptions = field(default_factory=AgentOptions)
    model_name: str = "Aurora"
    model_year: int = 2026
    vmg_id: str = ""
    # Set by the MQTT side when status goes over MQTT: publish(report_dict).
    mqtt_status: Callable[..., Any] | None = None
    outcomes: list[UpdateOutcome] = field(default_factory=list)
    phase: str = "idle"
    # Uptane full verification (simulator.uptane): when set, only images both repositories
    # approved are installed.
    uptane: PrimaryVerifier | None = None

    def __post_init__(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._busy = threading.Lock()
        self._stop = threading.Event()
        self._sequence = int(time.time() * 1000)
        self._ready: dict[str, Any] | None = None
        self._failures_left = self.options.fail_times if self.options.fail != "none" else 0
        self.min_package_version: dict[str, int] = {}
        # (update_id, attempt) of offers carried through to an outcome; kept across restarts.
        self.finished_offers: set[tuple[int, int]] = set()
        self._load_state()

    @property
    def ecu_zones(self) -> dict[str, str]:
        return {ecu.ecu_id: ecu.zone for ecu in self.ecus.values()}

    # persistent state: what runs, and the anti-rollback floor per zone ----------------------

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def _load_state(self) -> None:
        if not self._state_file.exists():
            return
        state = json.loads(self._state_file.read_text())
        for ecu_id, running in state.get("ecus", {}).items():
            if ecu_id in self.ecus:
                self.ecus[ecu_id].run_version(running["sw_version"], running.get("sha256", ""))
        self.min_package_version = state.get("min_package_version", {})
        self.finished_offers = {tuple(offer) for offer in state.get("finished_offers", [])}

    def _save_state(self) -> None:
        state = {
            "ecus": {
                e.ecu_id: {"sw_version": e.sw_version, "sha256": e.image_sha256}
                for e in self.ecus.values()
            },
            "min_package_version": self.min_package_version,
            "finished_offers": sorted(self.finished_offers),
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self._state_file)

    # registration and configuration reports -------------------------------------------------

    def register(self) -> dict[str, Any]:
        """POST /vehicles/register with the VIN of our certificate (201 new, 200 known)."""
        return self.api.call(
            "POST",
            "/api/v1/vehicles/register",
            json={
                "vin": self.vin,
                "model_name": self.model_name,
                "model_year": self.model_year,
                "vmg_id": self.vmg_id,
            },
        )

    def vci(self, trigger: str) -> dict[str, Any]:
        return {
            "vin": self.vin,
            "device_id": self.vmg_id,
            "timestamp": int(time.time()),
            "trigger": trigger,
            "ecus": [ecu.vci_entry() for ecu in self.ecus.values()],
        }

    def send_vci(self, trigger: str) -> dict[str, Any]:
        return self.api.call("POST", f"/api/v1/vehicles/{self.vin}/vci", json=self.vci(trigger))

    def check(self) -> dict[str, Any]:
        return self.api.call("POST", "/api/v1/ota/check", json={})

    # status reports -------------------------------------------------------------------------

    def report(self, update_id: int, vmg_state: int, **fields: Any) -> None:
        """One status report; a 409/404 means the server no longer wants this update."""
        self._sequence += 1
        document = {
            "update_id": update_id,
            "report_id": uuid.uuid4().hex,
            "sequence": self._sequence,
            "vmg_state": vmg_state,
            **fields,
        }
        if self.options.status_via == "mqtt" and self.mqtt_status is not None:
            self.mqtt_status(**document)
            return
        response = self.api.send("POST", "/api/v1/ota/status", json=document)
        if response.status in (404, 409):
            raise StopUpdate(f"server refused the report: {response.body[:200]!r}")
        if response.status >= 300:
            raise HttpsError(response.status, f"status report: {response.body[:200]!r}")

    # the update -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def stop(self) -> bool:
        """Abandon a download in progress (cancel command, or the offer was withdrawn)."""
        if self.phase in ("checking", "downloading"):
            self._stop.set()
            return True
        return False

    def has_finished(self, offer: dict[str, Any]) -> bool:
        """True for a (retained, re-sent) offer this vehicle already carried to an outcome."""
        key = (offer.get("update_id"), offer.get("attempt"))
        return key in self.finished_offers

    def _finished(self, update_id: int, attempt: int | None) -> None:
        self.finished_offers.add((update_id, attempt))
        self._save_state()

    def start_in_background(self, reason: str) -> bool:
        """Run `run_update` in a thread unless an update is already under way."""
        if self.busy:
            return False
        threading.Thread(
            target=self._run_quietly, args=(reason,), name=f"ota-{self.vin}", daemon=True
        ).start()
        return True

    def _run_quietly(self, reason: str) -> None:
        delay = self.options.run_retry_seconds
        for attempt in range(self.options.run_retries + 1):
            try:
                self.run_update(reason=reason)
                return
            except HttpsError as exc:
                if exc.status not in UNAVAILABLE or attempt == self.options.run_retries:
                    logger.exception("%s: update run failed", self.vin)
                    return
                logger.warning("%s: server unavailable (%s); run again in %.0f s", self.vin,
                               exc, delay)  # fmt: skip
            except Exception:
                logger.exception("%s: update run failed", self.vin)
                return
            time.sleep(delay)
            delay = min(delay * 2, 60.0)

    def run_update(self, *, reason: str = "check") -> UpdateOutcome:
        """Check for an update and carry it through; returns what happened."""
        if not self._busy.acquire(blocking=False):
            return UpdateOutcome(None, "none", "an update is already running")
        self._stop.clear()
        try:
            outcome = self._run(reason)
        except StopUpdate as exc:
            outcome = UpdateOutcome(None, "stopped", str(exc))
        finally:
            self.phase = "idle" if self._ready is None else "ready"
            self._busy.release()
        logger.info(
            "%s: update %s: %s %s", self.vin, outcome.update_id, outcome.result, outcome.detail
        )
        self.outcomes.append(outcome)
        return outcome

    def _run(self, reason: str) -> UpdateOutcome:
        self.phase = "checking"
        plan = self.check()
        if not plan.get("update_available"):
            return UpdateOutcome(plan.get("update_id"), "none", plan.get("refused", ""))
        update_id, attempt = plan["update_id"], plan.get("attempt")
        if self._ready is not None and self._ready["update_id"] == update_id:
            return UpdateOutcome(update_id, "ready", "installed, waiting for the activate command")
        targets = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
        if all(
            ecu_id in self.ecus and self.ecus[ecu_id].sw_version == version
            for ecu_id, version in targets.items()
        ):
            # Already running the targets (say the server restarted before it took our last
            # report): prove it instead of installing again.
            self.report(
                update_id,
                COMPLETED,
                percentage=100,
                current_step="running",
                running_versions=targets,
                package_proofs=self._proofs_of_saved(plan),
            )
            self.send_vci("post_update")
            self._finished(update_id, attempt)
            return UpdateOutcome(update_id, "succeeded", "already running the targets", targets)
        logger.info("%s: update %s offered (%s)", self.vin, update_id, reason)
        spoil = self._spoil()
        try:
            files = self._download(update_id, plan)
        except InterruptedError:
            raise StopUpdate("download stopped") from None
        self.phase = "verifying"
        self.report(update_id, VERIFYING, percentage=0, current_step="verifying signatures")
        try:
            packages = self._verify(plan, files, tamper=spoil == "verify")
        except (OtapError, SigningError, ValueError) as exc:
            for path in files.values():
                path.unlink(missing_ok=True)
            return self._error(update_id, f"verification failed: {exc}", "failed")
        self.phase = "installing"
        self.report(update_id, INSTALLING, percentage=0, current_step="flashing")
        if spoil == "install":
            first = plan["items"][0]["ecu_id"]
            return self._error(update_id, f"install failed: flash write error on {first}", "failed")
        staged = self._install(update_id, plan, files, packages)
        self._ready = {
            "update_id": update_id,
            "attempt": attempt,
            "staged": staged,
            "spoil": spoil,
            "packages": packages,
            "proofs": self._proofs(plan, files.values()),
        }
        self.report(update_id, READY, percentage=100, current_step="waiting for reboot")
        if self.options.activation == "command":
            return UpdateOutcome(update_id, "ready", "waiting for the activate command")
        return self._reboot()

    @staticmethod
    def _proofs(plan: dict[str, Any], files: Any) -> dict[str, str]:
        """Proof of possession of each downloaded package (saved as <package_id>.otap)."""
        nonce = plan.get("possession_nonce")
        if not nonce:
            return {}
        return {path.stem: possession_proof(path, nonce) for path in files}

    def _proofs_of_saved(self, plan: dict[str, Any]) -> dict[str, str]:
        """Proofs for the plan's packages still on disk from an earlier run of this attempt."""
        saved = (
            self.state_dir / "downloads" / f"{package['package_id']}.otap"
            for package in plan.get("packages", [])
        )
        return self._proofs(plan, [path for path in saved if path.exists()])

    def _spoil(self) -> str:
        if self._failures_left <= 0:
            return "none"
        self._failures_left -= 1
        return self.options.fail

    def _error(self, update_id: int, message: str, result: str, **fields: Any) -> UpdateOutcome:
        self.report(update_id, ERROR, error=message[:500], **fields)
        return UpdateOutcome(update_id, result, message, fields.get("running_versions", {}))

    def _download(self, update_id: int, plan: dict[str, Any]) -> dict[str, Path]:
        self.phase = "downloading"
        total = max(plan.get("total_size") or 1, 1)
        done = 0
        self.report(update_id, DOWNLOADING, percentage=0, current_step="downloading")
        downloads = self.state_dir / "downloads"
        downloads.mkdir(exist_ok=True)
        files: dict[str, Path] = {}
        for package in plan["packages"]:
            try:
                target = self._fetch(package)
            except HttpsError as exc:
                # The package may have been rebuilt since the plan was made (a new hash, or
                # gone): ask for the plan's current packages once and start that one again.
                logger.warning("%s: %s; asking for the current package", self.vin, exc)
                package = self._current_package(update_id, package["zonal_gateway_id"])
                target = self._fetch(package)
            files[package["zonal_gateway_id"]] = target
            done += package["size"]
            if done < total:
                self.report(
                    update_id,
                    DOWNLOADING,
                    percentage=min(99, done * 100 // total),
                    current_step=f"downloaded {package['zonal_gateway_id']}",
                )
        self.report(update_id, DOWNLOADING, percentage=100, current_step="downloaded")
        return files

    def _fetch(self, package: dict[str, Any]) -> Path:
        if not self.api.serves(package["download_url"]):
            raise HttpsError(0, f"{package['download_url']} is not this vehicle's server")
        path = "/" + package["download_url"].split("/", 3)[3]
        cut, self.options.cut_download_at = self.options.cut_download_at, None
        return self.api.download(
            path,
            self.state_dir / "downloads" / f"{package['package_id']}.otap",
            size=package["size"],
            sha256=package["sha256"],
            chunk_size=self.options.chunk_size,
            cut_at=cut,
            should_stop=self._stop.is_set,
        )

    def _current_package(self, update_id: int, zone: str) -> dict[str, Any]:
        answer = self.api.call(
            "POST", "/api/v1/ota/package", json={"update_id": update_id, "zonal_gateway_id": zone}
        )
        return answer["packages"][0]

    def _verify(
        self, plan: dict[str, Any], files: dict[str, Path], *, tamper: bool
    ) -> dict[str, Any]:
        """Both signatures, expiry, anti-rollback, hashes, and that each package is the plan's."""
        targets = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
        verified = {}
        for zone, path in files.items():
            if tamper:
                _flip_a_byte(path)
            with path.open("rb") as fh:
                package = verify_package(
                    fh,
                    trust=self.trust,
                    installed_package_version=self.min_package_version.get(zone),
                )
            check_package_fits(package, zone=zone, targets=targets, ecu_zones=self.ecu_zones)
            verified[zone] = package
        if self.uptane is not None:
            check_packages(self.uptane.refresh(), verified.values())
        return verified

    def _install(
        self, update_id: int, plan: dict[str, Any], files: dict[str, Path], packages: dict
    ) -> dict[str, tuple[str, str]]:
        """Write every image into the ECUs' inactive banks; returns ecu_id -> (version, sha)."""
        bank = self.state_dir / "inactive-bank"
        shutil.rmtree(bank, ignore_errors=True)
        staged: dict[str, tuple[str, str]] = {}
        for index, (zone, path) in enumerate(files.items(), start=1):
            with path.open("rb") as fh:
                extract_package(
                    fh,
                    bank / zone,
                    trust=self.trust,
                    installed_package_version=self.min_package_version.get(zone),
                )
            for entry in packages[zone].entries:
                staged[entry.ecu_id] = (entry.target_version, entry.image_sha256.hex())
            self.report(
                update_id,
                INSTALLING,
                percentage=index * 100 // len(files),
                current_step=f"flashed {zone}",
            )
        return staged

    # reboot and activation ------------------------------------------------------------------

    def activate(self) -> UpdateOutcome | None:
        """Reboot into an installed update (the `activate` command); None if nothing is ready."""
        if self._ready is None or not self._busy.acquire(blocking=False):
            return None
        try:
            outcome = self._reboot()
        finally:
            self.phase = "idle"
            self._busy.release()
        self.outcomes.append(outcome)
        return outcome

    def _reboot(self) -> UpdateOutcome:
        ready, self._ready = self._ready, None
        assert ready is not None
        update_id, staged = ready["update_id"], ready["staged"]
        previous = {ecu_id: self.ecus[ecu_id].sw_version for ecu_id in staged}
        self.phase = "rebooting"
        if ready["spoil"] == "boot":
            # The new images do not come up; the bootloader falls back to the previous bank.
            outcome = self._error(
                update_id,
                "boot failed on the new software; fell back to the previous bank",
                "rolled_back",
                rolled_back=True,
                running_versions=previous,
            )
            self.send_vci("boot_fallback")
            return outcome
        for ecu_id, (version, sha) in staged.items():
            self.ecus[ecu_id].run_version(version, sha)
        for zone, package in ready["packages"].items():
            self.min_package_version[zone] = package.package_version
        self._save_state()
        running = {ecu_id: version for ecu_id, (version, _) in staged.items()}
        self.report(
            update_id,
            COMPLETED,
            percentage=100,
            current_step="rebooted",
            running_versions=running,
            package_proofs=ready.get("proofs", {}),
        )
        self.send_vci("post_update")
        self._finished(update_id, ready.get("attempt"))
        return UpdateOutcome(update_id, "succeeded", "", running)


def check_package_fits(
    package: Any, *, zone: str, targets: dict[str, str], ecu_zones: dict[str, str]
) -> None:
    """A verified package is the plan's and fits this vehicle's wiring; ValueError if not.

    The signature says the server meant it; only the vehicle knows its own wiring.
    """
    if package.zonal_gateway_id != zone:
        raise ValueError(f"package for {package.zonal_gateway_id}, expected {zone}")
    if package.zonal_gateway_id not in set(ecu_zones.values()):
        raise ValueError(f"this vehicle has no zonal gateway {package.zonal_gateway_id}")
    for entry in package.entries:
        if targets.get(entry.ecu_id) != entry.target_version:
            raise ValueError(f"{entry.ecu_id} {entry.target_version} is not in the plan")
        if entry.ecu_id not in ecu_zones:
            raise ValueError(f"this vehicle has no {entry.ecu_id}")
        if ecu_zones[entry.ecu_id] != package.zonal_gateway_id:
            raise ValueError(
                f"{entry.ecu_id} is behind {ecu_zones[entry.ecu_id]}, "
                f"not {package.zonal_gateway_id}"
            )


def _flip_a_byte(path: Path) -> None:
    """Corrupt the last byte of the file, as a bad flash or a tampering proxy would."""
    with path.open("r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
