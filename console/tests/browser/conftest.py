"""A real console for browser tests: the ASGI app behind the PQC-TLS operator listener, and
Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

CHROMIUM = os.environ.get("OTA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(settings.BASE_DIR) / "test-output" / "screenshots"
# Generous upper bounds for one page action, so a slow CI machine fails on bugs, not timing.
ACTION_TIMEOUT_MS = 15_000


@dataclass
class Console:
    """The running operator console: its base URL and a way to run code as the server does."""

    base_url: str
    ports: dict[str, int]
    call_on_server: Callable[..., Any]


def _call_on_server(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run `fn` in a worker thread of the server's event loop and wait for its result.

    Services publish live events with async_to_sync from their thread; run this way, the events
    land on the loop the WebSocket consumers listen on, exactly as for a request the server
    handles itself.
    """
    from asgiref.sync import sync_to_async
    from twisted.internet import defer
    from twisted.internet.threads import blockingCallFromThread

    from pqc.server import reactor

    def run() -> Any:
        try:
            return fn(**kwargs)
        finally:
            # Worker threads outlive the call; a connection left open would keep the test
            # database from being dropped at the end of the session.
            connections.close_all()

    def start() -> defer.Deferred:
        coroutine = sync_to_async(run, thread_sensitive=False)()
        return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine))

    return blockingCallFromThread(reactor, start)


def _close_server_connections() -> None:
    """Close the database connections the server's worker threads left open.

    Those threads outlive the test; on PostgreSQL an open session keeps the test database from
    being dropped. The raw connection is closed and forgotten, as Django refuses to close a
    connection from a thread that does not own it.
    """
    import gc

    from django.db.backends.base.base import BaseDatabaseWrapper

    ours = {id(connections[alias]) for alias in connections}
    for wrapper in gc.get_objects():
        # isinstance() would touch dead weak proxies among gc objects; type() does not.
        if issubclass(type(wrapper), BaseDatabaseWrapper) and id(wrapper) not in ours:
            raw = wrapper.connection
            if raw is not None:
                with contextlib.suppress(Exception):
                    raw.close()
                # The thread may serve the next test: let it reconnect instead of failing.
                wrapper.connection = None


@pytest.fixture
def console(transactional_db, monkeypatch) -> Iterator[Console]:
    """The operator console on an ephemeral loopback port, over PQC-TLS (server cert only)."""
    if not Path(CHROMIUM).exists():
        # CI installs Chromium, so there a missing browser is a failure, not a reason to skip.
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/system-deps should have installed it")
        pytest.skip(f"{CHROMIUM} is missing: run .ci/system-deps")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the test makes
    # between page actions are still plain synchronous code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    from otaproject.asgi import application
    from pqc import server
    from pqc.pki import FleetPki

    pki = FleetPki(Path(settings.PKI_DIR) / "browser")
    pki.init(families=["ecdsa-p256"], hostnames=["localhost", "127.0.0.1"])
    listeners = server.listeners_from_settings(
        application=application,
        pki=pki,
        host="127.0.0.1",
        vehicle_port=0,
        console_port=0,
        with_mqtt=False,
        on_vehicle_handshake=None,
    )
    ports = server.start_in_thread(listeners)
    try:
        yield Console(
            base_url=f"https://localhost:{ports[server.CONSOLE]}",
            ports=ports,
            call_on_server=_call_on_server,
        )
    finally:
        server.stop_in_thread(listeners)
        _close_server_connections()


@pytest.fixture
def browser_page(console: Console) -> Iterator[Any]:
    """A fresh Chromium profile and page, trusting nothing but ignoring the fleet CA's novelty."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="ota-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                ignore_https_errors=True,
                viewport={"width": 1366, "height": 900},
                base_url=console.base_url,
            )
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            try:
                yield page
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def wait_until_live(page: Any) -> None:
    """The page's WebSocket is subscribed (the server answered with its hello)."""
    # A locator, not wait_for_function: the console's CSP forbids the eval() that one needs.
    page.locator("body[data-live-group]").wait_for(state="attached")
