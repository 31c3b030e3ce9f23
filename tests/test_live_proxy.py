"""A service's proxy on loopback: it sends requests only to replicas that answer their health
probe, spreads concurrent requests by the fewest in flight, moves on when a replica goes
away, and pushes the demand it counts. Real HTTP servers on 127.0.0.1, short bounded waits."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from corral.live.proxy import Proxy
from tests.support.servers import serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica(name: str, healthy: bool = True, hold_s: float = 0.2) -> Starlette:
    async def health(_: Request) -> JSONResponse:
        return JSONResponse({}, status_code=200 if healthy else 503)

    async def work(_: Request) -> JSONResponse:
        await asyncio.sleep(hold_s)
        return JSONResponse({"replica": name})

    return Starlette(routes=[Route("/health", health), Route("/work", work, methods=["POST"])])


class FakeServer:
    """The corral server as the proxy sees it: the replicas' endpoints and the demand pushed."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.pushed: list[float] = []

        async def endpoints(_: Request) -> JSONResponse:
            rows = [{"url": u, "job_id": str(i), "since_s": 0.0} for i, u in enumerate(self.urls)]
            return JSONResponse(rows)

        async def demand(request: Request) -> JSONResponse:
            self.pushed.append((await request.json())["requests_per_s"])
            return JSONResponse({})

        self.app = Starlette(
            routes=[
                Route("/v1/services/chat/endpoints", endpoints),
                Route("/v1/services/chat/demand", demand, methods=["POST"]),
            ]
        )


def until(condition, limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def setup():
    server = FakeServer()
    webs = []
    web, server_url = serve(server.app)
    webs.append(web)
    replicas = {}
    for name, healthy in (("a", True), ("b", True), ("sick", False)):
        web, url = serve(replica(name, healthy))
        webs.append(web)
        replicas[name] = (web, url)
    server.urls = [url for _, url in replicas.values()]
    front = Proxy(server_url, "token", "chat", refresh_s=0.05, push_s=0.2)
    web, proxy_url = serve(front.app)
    webs.append(web)
    until(lambda: len(front.ready) == 2)
    yield server, replicas, front, proxy_url
    for web in webs:
        web.should_exit = True


def burst(url: str, n: int) -> list[dict]:
    async def go() -> list[dict]:
        async with httpx.AsyncClient(timeout=10) as client:
            answers = await asyncio.gather(*(client.post(f"{url}/work") for _ in range(n)))
        assert all(a.status_code == 200 for a in answers)
        return [a.json() for a in answers]

    return asyncio.run(go())


def test_requests_go_to_ready_replicas_spread_by_fewest_in_flight(setup):
    server, replicas, front, url = setup
    assert set(front.ready) == {replicas["a"][1], replicas["b"][1]}  # (not the one failing its probe)
    served = Counter(a["replica"] for a in burst(url, 10))
    assert served == {"a": 5, "b": 5}


def test_a_replica_that_goes_away_gets_nothing_more(setup):
    server, replicas, front, url = setup
    replicas["a"][0].should_exit = True  # (its process is gone: connections are refused)

    def refused() -> bool:
        try:
            httpx.get(f"{replicas['a'][1]}/health", timeout=1)
        except httpx.ConnectError:
            return True
        return False

    until(refused)
    served = Counter(a["replica"] for a in burst(url, 6))
    assert served == {"b": 6}
    server.urls = [replicas["b"][1]]  # (the server no longer lists it either)
    until(lambda: set(front.ready) == {replicas["b"][1]})


def test_with_no_ready_replica_a_request_waits_for_one(setup):
    server, replicas, front, url = setup
    server.urls = []
    until(lambda: not front.ready)
    later = threading.Timer(0.3, lambda: setattr(server, "urls", [replicas["b"][1]]))
    later.start()
    assert [a["replica"] for a in burst(url, 1)] == ["b"]


def test_the_demand_it_counts_is_pushed(setup):
    server, replicas, front, url = setup
    burst(url, 20)
    until(lambda: any(r > 0 for r in server.pushed))
    until(lambda: server.pushed and server.pushed[-1] == 0.0)  # (traffic over: 0 requests/s)
    assert all(r >= 0 for r in server.pushed)
