from __future__ import annotations

import asyncio
import threading

from channels.layers import get_channel_layer

from core.events import FLEET_GROUP, _send, bind_event_loop


def test_event_from_a_worker_thread_reaches_a_listener_on_the_server_loop() -> None:
    """The bridge and campaign workers publish from their own threads; the dashboard's consumers
    wait on the server's event loop. With the in-process channel layer the event must still
    arrive there."""
    layer = get_channel_layer()
    received: list[dict] = []

    async def listen() -> None:
        bind_event_loop(asyncio.get_running_loop())
        channel = await layer.new_channel()
        await layer.group_add(FLEET_GROUP, channel)
        sender = threading.Thread(target=_send, args=(FLEET_GROUP, {"kind": "probe", "n": 1}))
        sender.start()
        message = await asyncio.wait_for(layer.receive(channel), timeout=10)
        received.append(message)
        await asyncio.get_running_loop().run_in_executor(None, sender.join)
        await layer.group_discard(FLEET_GROUP, channel)

    asyncio.run(listen())
    assert received == [{"type": "ota.event", "event": {"kind": "probe", "n": 1}}]


class _LoopRecordingLayer:
    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.loops.append(asyncio.get_running_loop())


def test_threads_without_a_server_loop_send_on_one_loop_of_the_process(monkeypatch) -> None:
    # The Redis layer keeps a connection pool per loop: a loop per event meant a new Redis
    # connection per event.
    layer = _LoopRecordingLayer()
    monkeypatch.setattr("core.events.get_channel_layer", lambda: layer)
    monkeypatch.setattr("core.events._server_loop", None)
    senders = [
        threading.Thread(target=_send, args=(FLEET_GROUP, {"kind": "probe", "n": n}))
        for n in range(3)
    ]
    for sender in senders:
        sender.start()
        sender.join(10)
    _send(FLEET_GROUP, {"kind": "probe", "n": 3})

    assert len(layer.loops) == 4
    assert len(set(map(id, layer.loops))) == 1
    assert layer.loops[0].is_running()


def test_an_event_sent_on_the_server_loop_itself_is_delivered_without_blocking_it() -> None:
    layer = get_channel_layer()
    received: list[dict] = []

    async def listen() -> None:
        bind_event_loop(asyncio.get_running_loop())
        channel = await layer.new_channel()
        await layer.group_add(FLEET_GROUP, channel)
        _send(FLEET_GROUP, {"kind": "probe", "n": 2})
        received.append(await asyncio.wait_for(layer.receive(channel), timeout=10))
        await layer.group_discard(FLEET_GROUP, channel)

    asyncio.run(listen())
    assert received == [{"type": "ota.event", "event": {"kind": "probe", "n": 2}}]
