"""Supervised background services: restarts with backoff, giving up, and what probes see."""

from __future__ import annotations

import threading

import pytest

from core import health


@pytest.fixture(autouse=True)
def _forget_services():
    yield
    for name in list(health.background_services()):
        health.forget(name)


def test_a_failing_service_is_restarted_until_it_runs():
    attempts = []
    stop = threading.Event()

    def flaky(stop_event: threading.Event) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("redis went away")
        stop_event.wait()

    thread = threading.Thread(
        target=health.supervise,
        args=("flaky", flaky, stop),
        kwargs={"max_restarts": 5, "on_give_up": pytest.fail, "first_backoff": 0.05},
    )
    thread.start()
    try:
        for _ in range(100):
            if (
                health.background_services().get("flaky", {}).get("state") == health.RUNNING
                and len(attempts) == 3
            ):
                break
            stop.wait(0.05)
        service = health.background_services()["flaky"]
        assert (service["state"], service["restarts"]) == (health.RUNNING, 2)
        assert service["last_error"] == "ConnectionError: redis went away"
        assert health.healthy()
    finally:
        stop.set()
        thread.join(5)
    assert health.background_services()["flaky"]["state"] == health.STOPPED


def test_a_service_that_cannot_recover_is_marked_failed_and_given_up():
    given_up = []

    def broken(stop_event: threading.Event) -> None:
        raise RuntimeError("no broker credentials")

    health.supervise(
        "broken",
        broken,
        threading.Event(),
        max_restarts=2,
        on_give_up=given_up.append,
        first_backoff=0.01,
    )
    service = health.background_services()["broken"]
    assert (service["state"], service["restarts"]) == (health.FAILED, 2)
    assert given_up == ["broken"]
    assert not health.healthy()


def test_a_service_with_nothing_to_do_finishes_without_restarts():
    health.supervise(
        "idle", lambda stop: None, threading.Event(), max_restarts=0, on_give_up=pytest.fail
    )
    assert health.background_services()["idle"]["state"] == health.FINISHED
    assert health.healthy()


def test_a_running_service_that_lost_its_broker_is_unhealthy():
    health.set_state("bridge", health.RUNNING)
    health.set_details("bridge", connected=False)
    assert not health.healthy()
    health.set_details("bridge", connected=True)
    assert health.healthy()
