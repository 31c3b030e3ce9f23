"""Serving an ASGI app on 127.0.0.1 in a thread, for tests that need a real socket."""

from __future__ import annotations

import threading
import time

import uvicorn

from tests.support.live import free_port


def serve(app) -> tuple[uvicorn.Server, str]:
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=web.run, daemon=True).start()
    deadline = time.monotonic() + 10
    while not web.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return web, f"http://127.0.0.1:{port}"
