from __future__ import annotations

import threading

import pytest

from core import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_services_left_behind():
    yield
    for name in list(health.background_services()):
        health.forget(name)


def test_ready_when_every_background_service_runs(client) -> None:
    health.set_state("core.mqtt.bridge.start", health.RUNNING)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "services": {"core.mqtt.bridge.start": "running"}}


def test_a_failed_service_makes_the_process_unready_without_its_error_text(client) -> None:
    health.set_state("ota.worker.start", health.RUNNING)
    health.set_state("core.mqtt.bridge.start", health.FAILED, error="secret internal detail")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["services"]["core.mqtt.bridge.start"] == "failed"
    assert "secret internal detail" not in response.content.decode()


def test_a_bridge_that_lost_its_broker_makes_the_process_unready(client) -> None:
    health.set_state("core.mqtt.bridge.start", health.RUNNING)
    health.set_details("core.mqtt.bridge.start", connected=False)
    assert client.get("/readyz").status_code == 503


def test_a_service_that_dies_under_supervision_shows_as_restarting(client) -> None:
    stop = threading.Event()
    crashed = threading.Event()

    def crashing(stop_event: threading.Event) -> None:
        crashed.set()
        raise RuntimeError("channel layer gone")

    thread = threading.Thread(
        target=health.supervise,
        args=("crashing.start", crashing, stop),
        kwargs={"max_restarts": 3, "on_give_up": lambda name: None, "first_backoff": 5.0},
        daemon=True,
    )
    thread.start()
    try:
        assert crashed.wait(5)
        for _ in range(50):
            if health.background_services().get("crashing.start", {}).get("state") != "running":
                break
            stop.wait(0.05)
        assert client.get("/readyz").status_code == 503
    finally:
        stop.set()
        thread.join(10)
