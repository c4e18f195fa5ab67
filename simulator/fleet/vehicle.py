"""One fleet vehicle: the reference vehicle's protocol as coroutines on a shared event loop.

What it does is what `simulator.reference.ReferenceVehicle` does: register with its
certificate, report its VCI, join MQTT through the TLS front with a persistent session and a
retained last will, run the update check when the retained desired state offers one, download
each zone package in resumable Range requests, verify both signatures with the OTAP verifier,
check that each package fits the plan and the wiring, install, reboot (or fail to boot and
fall back), report with proofs of possession, send the VCI that proves the new versions, send
telemetry at an interval and answer diagnostics and control commands.

Unlike the reference vehicle it keeps its state in memory (no state directory per vehicle)
and builds its ECU objects only when a diagnostics request needs them: what runs is a dict of
the ECUs an update changed, over the registry's defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from firmware.otap import OtapError, TrustSet, verify_package
from firmware.signing import SigningError
from pqc.catalogue import PqcConfiguration
from simulator.ecus import SimulatedEcu, build_ecus
from simulator.fleet.http import FleetHttps
from simulator.fleet.mqtt import MqttError, MqttSession
from simulator.fleet.tls import (
    ClientContexts,
    HandshakeCounts,
    TlsClosed,
    TlsStream,
    VehicleIdentity,
)
from simulator.https import HttpsError, possession_proof_of_bytes
from simulator.ota import (
    COMPLETED,
    DOWNLOADING,
    ERROR,
    INSTALLING,
    READY,
    VERIFYING,
    check_package_fits,
)
from simulator.vehicle import READINESS, diagnostic_results, telemetry_document

logger = logging.getLogger("simulator.fleet")


@dataclass
class FleetServer:
    host: str = "127.0.0.1"
    api_port: int = 8443
    mqtt_port: int = 8883
    server_name: str = "localhost"
    topic_root: str = "vehicle"


@dataclass
class FleetShared:
    """What every vehicle of the fleet process shares: contexts, trust, registry, counters."""

    server: FleetServer
    contexts: ClientContexts
    trust: TrustSet
    build_sheet: list[dict]
    handshakes: HandshakeCounts = field(default_factory=HandshakeCounts)
    telemetry_interval: float = 30.0
    keepalive: int = 60
    answer_rule: str = "all"
    model_name: str = "Aurora"
    model_year: int = 2026
    # Vehicles doing HTTPS work at once (registration, update runs): the fleet's own bound.
    https_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(100))
    telemetry_sent: int = 0

    def __post_init__(self) -> None:
        template = build_ecus(self.build_sheet, "0" * 17)
        self.defaults = {e.ecu_id: e.sw_version for e in template.values()}
        self.ecu_zones = {e.ecu_id: e.zone for e in template.values()}


@dataclass
class Faults:
    """What goes wrong with this vehicle, drawn once from the fleet's rates."""

    fail_boot: bool = False
    silent: bool = False
    cut_download: bool = False


class StopUpdate(Exception):
    """The server no longer wants this update (404/409 on a report)."""


class FleetVehicle:
    def __init__(
        self,
        identity: VehicleIdentity,
        config: PqcConfiguration,
        shared: FleetShared,
        faults: Faults,
    ) -> None:
        self.vin = identity.vin
        self.identity = identity
        self.config = config
        self.shared = shared
        self.faults = faults
        # ecu_id -> (version, image sha256) for the ECUs an update changed.
        self.installed: dict[str, tuple[str, str]] = {}
        self.min_package_version: dict[str, int] = {}
        self.finished_offers: set[tuple[Any, Any]] = set()
        self.outcomes: list[dict[str, Any]] = []
        # Why runs of an update were retried ("error" outcomes are retried, not recorded there).
        self.update_errors: list[str] = []
        # An installed update whose final report or proof VCI has not gone through yet: a retry
        # sends that same report again (the server acknowledges a repeated report once).
        self._unconfirmed: dict[str, Any] | None = None
        self.state = "starting"  # starting, connected, updating, offline, failed
        self.error = ""
        self.mqtt: MqttSession | None = None
        self.seq = 0
        self._live_ecus: dict[str, SimulatedEcu] = {}
        self._update: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._sequence = int(time.time() * 1000)
        self.https = FleetHttps(self._open_api, server_hostname=shared.server.server_name)

    def saved_state(self) -> dict[str, Any]:
        """What survives a restart of the fleet process (a vehicle's flash and its memory)."""
        return {
            "installed": self.installed,
            "min_package_version": self.min_package_version,
            "finished_offers": sorted(self.finished_offers),
            "unconfirmed": self._unconfirmed,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.installed = {k: (v[0], v[1]) for k, v in state.get("installed", {}).items()}
        self.min_package_version = dict(state.get("min_package_version", {}))
        self.finished_offers = {tuple(offer) for offer in state.get("finished_offers", [])}
        self._unconfirmed = state.get("unconfirmed")

    # connections ------------------------------------------------------------------------------

    async def _open(self, port: int) -> TlsStream:
        server = self.shared.server
        return await TlsStream.open(
            server.host,
            port,
            context=self.shared.contexts.for_config(self.config),
            identity=self.identity,
            server_hostname=server.server_name,
            counts=self.shared.handshakes,
        )

    async def _open_api(self) -> TlsStream:
        return await self._open(self.shared.server.api_port)

    def topic(self, kind: str) -> str:
        return f"{self.shared.server.topic_root}/{self.vin}/{kind}"

    def running(self) -> dict[str, str]:
        versions = dict(self.shared.defaults)
        versions.update({ecu_id: v for ecu_id, (v, _) in self.installed.items()})
        return versions

    def ecu(self, ecu_id: str) -> SimulatedEcu:
        """The ECU object for diagnostics, built on first use and kept for its UDS session."""
        if ecu_id not in self._live_ecus:
            built = build_ecus(
                [e for e in self.shared.build_sheet if e["ecu_id"] == ecu_id], self.vin
            ).get(ecu_id) or SimulatedEcu(ecu_id=ecu_id, vin=self.vin)
            if ecu_id in self.installed:
                built.run_version(*self.installed[ecu_id])
            self._live_ecus[ecu_id] = built
        return self._live_ecus[ecu_id]

    # life -------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Register, report, then stay on MQTT (reconnecting with backoff) until `stop`."""
        try:
            async with self.shared.https_slots:
                await self.https.call(
                    "POST",
                    "/api/v1/vehicles/register",
                    json={
                        "vin": self.vin,
                        "model_name": self.shared.model_name,
                        "model_year": self.shared.model_year,
                        "vmg_id": f"VMG-{self.vin[-6:]}",
                    },
                )
                await self.send_vci("power_on")
                await self.https.close()
        except HttpsError as exc:
            self.state, self.error = "failed", f"registration: {exc}"
            return
        delay = 1.0
        while not stop.is_set():
            try:
                await self._mqtt_session(stop)
                delay = 1.0
            except (MqttError, TlsClosed, OSError, TimeoutError) as exc:
                # Whatever ends a session (a CONNACK that never came included), the vehicle
                # tries again: in a reconnect storm an uncaught timeout ended a third of them.
                self.error = f"mqtt: {str(exc) or type(exc).__name__}"
            if stop.is_set():
                break
            self.state = "offline"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 30.0)

    async def _mqtt_session(self, stop: asyncio.Event) -> None:
        stream = await self._open(self.shared.server.mqtt_port)
        will = {"vin": self.vin, "state": "offline", "reason": "connection lost"}
        session = MqttSession(stream, self.vin, self._on_message)
        try:
            await session.connect(
                keepalive=self.shared.keepalive,
                will_topic=self.topic("status"),
                will_payload=json.dumps(will).encode(),
            )
            reader = asyncio.create_task(session.run())
            self.mqtt = session
            await session.subscribe(
                [self.topic("control"), self.topic("diagnostics"), self.topic("desired-state")]
            )
            await self.publish("status", {"vin": self.vin, "state": "online"}, retain=True)
            if self.state in ("starting", "offline"):
                self.state = "connected"
            background = asyncio.create_task(self._heartbeat(session))
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            background.cancel()
            if stopping in done:
                # A clean shutdown says so itself (the will is for a lost connection).
                with contextlib.suppress(MqttError):
                    await self.publish(
                        "status", {"vin": self.vin, "state": "offline", "reason": "shutdown"},
                        retain=True, timeout=5,
                    )  # fmt: skip
                await session.disconnect()
                reader.cancel()
                await stream.close()
                return
            stopping.cancel()
            reader.result()  # raises the MqttError that ended the session
        finally:
            self.mqtt = None
            stream.abort()

    async def _heartbeat(self, session: MqttSession) -> None:
        """Telemetry every interval (first one at a random point of it) and keep-alive pings."""
        interval = self.shared.telemetry_interval
        ping_every = self.shared.keepalive / 2
        next_telemetry = time.monotonic() + random.uniform(0, interval)
        while True:
            wait = min(ping_every, max(next_telemetry - time.monotonic(), 0))
            await asyncio.sleep(wait)
            if time.monotonic() >= next_telemetry:
                self.seq += 1
                await session.publish(
                    self.topic("telemetry"),
                    json.dumps(telemetry_document(self.vin, self.seq)).encode(),
                )
                self.shared.telemetry_sent += 1
                next_telemetry += interval
            else:
                await session.ping()

    async def publish(
        self, kind: str, document: dict[str, Any], *, retain: bool = False, timeout: float = 30
    ) -> None:
        if self.mqtt is None:
            raise MqttError("not connected")
        await self.mqtt.publish(
            self.topic(kind), json.dumps(document).encode(), retain=retain, timeout=timeout
        )

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # server -> vehicle ------------------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if self.faults.silent:
            return  # out of reach: it connected, but nothing it is sent gets an answer
        try:
            document = json.loads(payload)
        except ValueError:
            return
        kind = topic.removeprefix(f"{self.shared.server.topic_root}/{self.vin}/")
        if kind == "desired-state":
            pending = document.get("pending_update")
            if (
                pending
                and (pending.get("update_id"), pending.get("attempt")) in self.finished_offers
            ):
                return  # the retained offer again, already carried to its outcome
            if pending and (self._update is None or self._update.done()):
                self._update = self._spawn(self.run_update())
        elif kind == "diagnostics":
            results = diagnostic_results(document, self.ecu, self.shared.answer_rule)
            if results:
                answer = {"request_id": document["request_id"], "vin": self.vin, "results": results}
                self._spawn(self._publish_quietly("diagnostics/response", answer))
        elif kind == "control":
            self._spawn(self._control(document))

    async def _publish_quietly(self, kind: str, document: dict[str, Any]) -> None:
        try:
            await self.publish(kind, document)
        except MqttError as exc:
            logger.info("%s: %s not sent: %s", self.vin, kind, exc)

    async def _control(self, command: dict[str, Any]) -> None:
        name = command.get("command")

        async def respond(status: str, **extra: Any) -> None:
            await self._publish_quietly(
                "control/response",
                {"command_id": command["command_id"], "vin": self.vin, "status": status, **extra},
            )

        await respond("accepted")
        if name == "collect_readiness":
            await respond("completed", result=READINESS)
        elif name == "collect_vci":
            answer = await self.send_vci("remote_request")
            await respond("completed", result={"snapshot_id": answer["snapshot_id"]})
        elif name == "start_download":
            if self._update is None or self._update.done():
                self._update = self._spawn(self.run_update())
            await self._update
            result = self.outcomes[-1] if self.outcomes else {"result": "none"}
            failed = result["result"] in ("failed", "rolled_back")
            await respond("failed" if failed else "completed", result=result)
        elif name == "cancel":
            if self._update is not None and not self._update.done():
                self._update.cancel()
                await respond("completed")
            else:
                await respond("failed", detail="nothing to cancel")
        else:
            # Fleet vehicles reboot as soon as an update is installed: nothing waits to activate.
            await respond("rejected", detail=f"a fleet vehicle cannot {name}")

    # configuration reports and updates ---------------------------------------------------------

    async def send_vci(self, trigger: str) -> dict[str, Any]:
        running = self.running()
        ecus = []
        for entry in self.shared.build_sheet:
            ecu = self._live_ecus.get(entry["ecu_id"])
            if ecu is None:
                ecu = build_ecus([entry], self.vin)[entry["ecu_id"]]
            row = ecu.vci_entry()
            row["sw_version"] = running[entry["ecu_id"]]
            ecus.append(row)
        document = {
            "vin": self.vin,
            "device_id": f"VMG-{self.vin[-6:]}",
            "timestamp": int(time.time()),
            "trigger": trigger,
            "ecus": ecus,
        }
        return await self.https.call("POST", f"/api/v1/vehicles/{self.vin}/vci", json=document)

    def _report_document(self, update_id: int, vmg_state: int, **fields: Any) -> dict[str, Any]:
        self._sequence += 1
        return {
            "update_id": update_id,
            "report_id": uuid.uuid4().hex,
            "sequence": self._sequence,
            "vmg_state": vmg_state,
            **fields,
        }

    async def report(self, update_id: int, vmg_state: int, **fields: Any) -> None:
        await self._send_report(self._report_document(update_id, vmg_state, **fields))

    async def _send_report(self, document: dict[str, Any]) -> None:
        response = await self.https.send("POST", "/api/v1/ota/status", json=document)
        if response.status in (404, 409):
            raise StopUpdate(f"server refused the report: {response.body[:200]!r}")
        if response.status >= 300:
            raise HttpsError(response.status, f"status report: {response.body[:200]!r}")

    async def run_update(self, *, retries: int = 5, retry_seconds: float = 5.0) -> None:
        """Check and carry out an offer; a run the server could not serve starts again later
        (bounded, with backoff): the offer is still there."""
        delay = retry_seconds
        for attempt in range(retries + 1):
            async with self.shared.https_slots:
                self.state = "updating"
                try:
                    if self._unconfirmed is not None:
                        outcome = await self._confirm()
                    else:
                        outcome = await self._update_once()
                except StopUpdate as exc:
                    outcome = {"update_id": None, "result": "stopped", "detail": str(exc)}
                except (HttpsError, MqttError) as exc:
                    outcome = {"update_id": None, "result": "error", "detail": str(exc)[:300]}
                finally:
                    await self.https.close()
                    self.state = "connected" if self.mqtt is not None else "offline"
            if outcome["result"] != "error" or attempt == retries:
                break
            self.update_errors.append(outcome["detail"])
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 60.0)
        if outcome["result"] != "none":
            self.outcomes.append(outcome)

    async def _update_once(self) -> dict[str, Any]:
        plan = await self.https.call("POST", "/api/v1/ota/check", json={})
        if not plan.get("update_available"):
            return {"update_id": plan.get("update_id"), "result": "none"}
        update_id, attempt = plan["update_id"], plan.get("attempt")
        targets = {item["ecu_id"]: item["to_version"] for item in plan["items"]}
        await self.report(update_id, DOWNLOADING, percentage=0, current_step="downloading")
        files: dict[str, bytes] = {}
        proofs: dict[str, str] = {}
        cut = self.faults.cut_download
        for package in plan["packages"]:
            path = "/" + package["download_url"].split("/", 3)[3]
            data = await self.https.download(
                path,
                size=package["size"],
                sha256=package["sha256"],
                have=bytearray(),
                cut_at=package["size"] // 2 if cut else None,
            )
            cut = False
            files[package["zonal_gateway_id"]] = data
            if plan.get("possession_nonce"):
                proofs[package["package_id"]] = possession_proof_of_bytes(
                    data, plan["possession_nonce"]
                )
        await self.report(update_id, VERIFYING, percentage=0, current_step="verifying signatures")
        try:
            packages = {zone: self._verify(zone, data, targets) for zone, data in files.items()}
        except (OtapError, SigningError, ValueError) as exc:
            await self.report(update_id, ERROR, error=f"verification failed: {exc}"[:500])
            return {"update_id": update_id, "result": "failed", "detail": str(exc)[:300]}
        await self.report(update_id, INSTALLING, percentage=100, current_step="flashed")
        await self.report(update_id, READY, percentage=100, current_step="waiting for reboot")
        staged = {
            entry.ecu_id: (entry.target_version, entry.image_sha256.hex())
            for package in packages.values()
            for entry in package.entries
        }
        running_before = self.running()
        if self.faults.fail_boot:
            previous = {ecu_id: running_before[ecu_id] for ecu_id in staged}
            await self.report(
                update_id,
                ERROR,
                error="boot failed on the new software; fell back to the previous bank",
                rolled_back=True,
                running_versions=previous,
            )
            await self.send_vci("boot_fallback")
            self.finished_offers.add((update_id, attempt))
            return {"update_id": update_id, "result": "rolled_back", "running": previous}
        self.installed.update(staged)
        for ecu_id, (version, sha) in staged.items():
            if ecu_id in self._live_ecus:
                self._live_ecus[ecu_id].run_version(version, sha)
        for zone, package in packages.items():
            self.min_package_version[zone] = package.package_version
        running = {ecu_id: version for ecu_id, (version, _) in staged.items()}
        self._unconfirmed = {
            "attempt": attempt,
            "running": running,
            "report": self._report_document(
                update_id,
                COMPLETED,
                percentage=100,
                current_step="rebooted",
                running_versions=running,
                package_proofs=proofs,
            ),
        }
        return await self._confirm()

    async def _confirm(self) -> dict[str, Any]:
        """Send the final report of the installed update (again) and the proof VCI."""
        assert self._unconfirmed is not None
        report = self._unconfirmed["report"]
        await self._send_report(report)
        await self.send_vci("post_update")
        update_id, running = report["update_id"], self._unconfirmed["running"]
        self.finished_offers.add((update_id, self._unconfirmed["attempt"]))
        self._unconfirmed = None
        return {"update_id": update_id, "result": "succeeded", "running": running}

    def _verify(self, zone: str, data: bytes, targets: dict[str, str]) -> Any:
        package = verify_package(
            io.BytesIO(data),
            trust=self.shared.trust,
            installed_package_version=self.min_package_version.get(zone),
        )
        check_package_fits(package, zone=zone, targets=targets, ecu_zones=self.shared.ecu_zones)
        return package
