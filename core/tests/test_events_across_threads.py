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
