"""Fifty fleet vehicles of mixed PQC configurations against `manage.py runota` in its own
process: a campaign of firmware uploaded over the API that every vehicle completes, a second
one that pauses at its failure threshold when a fifth of the vehicles fail to boot, and a
diagnostics request to one zone of every vehicle.

On PostgreSQL (DATABASE_URL) the server gets its own database `ota_fleet`; with MQTT_URL it
uses that broker under a topic root of its own, otherwise runota's embedded broker.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from pqc.pki import fleet_vin
from simulator.fleet.drill import FleetProcess, ServerProcess, wait_until

pytestmark = pytest.mark.slow

FLEET = 50
CONFIGS = "1:60,13:30,4:10"
TERMINAL = {"completed", "paused", "cancelled"}


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        database_url = urlsplit(database_url)._replace(path="/ota_fleet").geturl()
    else:
        database_url = ""  # runota's default: SQLite under its var/
    process = ServerProcess(
        var=tmp_path / "var", database_url=database_url, mqtt_url=os.environ.get("MQTT_URL", "")
    )
    process.prepare(fleet=FLEET, families="ecdsa-p256:60,ml-dsa-65:40")
    process.start()
    yield process
    process.stop()


def _campaign(console, version: str, **fields) -> int:
    firmware = console.upload("ECM", version, random.randbytes(2048), "2.0,2.1")
    return console.start_campaign(
        name=f"ECM {version} to the fleet",
        firmware_ids=[firmware["id"]],
        target_vins=[fleet_vin(i) for i in range(FLEET)],
        wave_percentages=[100],
        max_attempts=1,
        **fields,
    )


def test_fifty_vehicles_through_two_campaigns_and_a_diagnostics_request(server) -> None:
    console = server.console()
    fleet = FleetProcess(server, FLEET, ["--configs", CONFIGS, "--cut-downloads", "10%",
                                         "--telemetry-interval", "5"])  # fmt: skip
    fleet.start()
    try:
        fleet.wait_connected(timeout=60)
        first = _campaign(console, "2.0.0", failure_threshold=0.1, success_threshold=1.0)
        done = console.wait_campaign(first, lambda c: c["status"] in TERMINAL, timeout=90)
        assert done["status"] == "completed", done
        assert done["counts"]["succeeded"] == FLEET
        # The server counts a success at the vehicle's final report; the vehicle's own account
        # is complete once its proof VCI has gone through too.
        wait_until(lambda: fleet.progress().get("done") == FLEET, timeout=60,
                   what="every vehicle's own account of its update", every=0.5)  # fmt: skip
    finally:
        summary = fleet.stop()
    # Each vehicle's own account matches the server's: one success, ECM on 2.0.0.
    assert Counter(o["result"] for v in summary["vehicles"] for o in v["outcomes"]) == {
        "succeeded": FLEET
    }
    assert all("2.0.0" in v["installed"].values() for v in summary["vehicles"])
    handshakes = summary["handshakes"]
    assert handshakes["failed"] == 0
    groups = Counter()
    for row in handshakes["by_group"]:
        groups[(row["group"], row["client_key"])] += row["count"]
    assert set(groups) == {
        ("MLKEM768", "ecdsa-p256"), ("X25519MLKEM768", "ml-dsa-65"), ("MLKEM768", "ml-dsa-65"),
    }  # fmt: skip
    assert summary["configurations"] == {"1": 30, "13": 15, "4": 5}
    assert summary["telemetry_sent"] >= FLEET

    # The same vehicles again, now a fifth of them fail to boot new software.
    failing = FleetProcess(server, FLEET, ["--configs", CONFIGS, "--fail", "boot:20%",
                                           "--telemetry-interval", "30"], name="failing")  # fmt: skip
    failing.start()
    try:
        failing.wait_connected(timeout=60)
        second = _campaign(console, "2.1.0", failure_threshold=0.1, success_threshold=0.5)
        paused = console.wait_campaign(second, lambda c: c["status"] in TERMINAL, timeout=90)
        assert paused["status"] == "paused", paused
        assert "failed" in paused["pause_reason"]
        assert paused["counts"]["rolled_back"] > FLEET * 0.1

        requests = []
        for index in range(FLEET):
            sent = console.json(
                "POST", "/api/v1/diagnostics/send", expect=202,
                json={"vin": fleet_vin(index), "zone": "ZGW_FRONT", "service": "0x22",
                      "params": {"dids": ["0xF190"]}, "timeout_ms": 20000},
            )  # fmt: skip
            requests.append((fleet_vin(index), sent["request_id"]))
        results = {}

        def answered() -> bool:
            for vin, request_id in requests:
                if vin not in results:
                    got = console.json("GET", f"/api/v1/diagnostics/results/{request_id}")
                    if got["status"] != "sent":
                        results[vin] = got
            return len(results) == FLEET

        wait_until(answered, timeout=60, what="diagnostics answers", every=1)
    finally:
        failing_summary = failing.stop()
    for vin, result in results.items():
        assert result["status"] == "completed", result
        assert result["results"] and all(r["outcome"] == "positive" for r in result["results"])
        assert all(vin in str(r["decoded"]) for r in result["results"])
    rolled_back = {
        v["vin"]
        for v in failing_summary["vehicles"]
        if "fail_boot" in v["faults"] and v["outcomes"]
    }
    server_rolled_back = {
        row["vin"]
        for row in console.json("GET", f"/api/v1/campaigns/{second}/vehicles?state=rolled_back")[
            "results"
        ]
    }
    assert server_rolled_back == rolled_back
