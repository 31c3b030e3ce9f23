"""A service's stable endpoint: a small reverse proxy in front of its replicas.

It asks the server every `refresh_s` where the service's replicas run, probes each new one
(`GET /health` must answer 200: the replica has loaded and warmed up) before sending it
anything, and sends each request to the ready replica with the fewest requests in flight. A
replica that refuses or drops a connection is dropped until it answers its probe again, and
the request goes to another (at most three tries). With no ready replica a request waits
(up to `wait_s`) for one. Every `push_s` it pushes the requests per second it received to
the server: the demand signal the broker reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}


class Proxy:
    def __init__(
        self,
        server: str,
        token: str,
        service: str,
        refresh_s: float = 1.0,
        push_s: float = 5.0,
        wait_s: float = 30.0,
        timeout_s: float = 300.0,
    ) -> None:
        self.server, self.service = server.rstrip("/"), service
        self.headers = {"Authorization": f"Bearer {token}"}
        self.refresh_s, self.push_s, self.wait_s, self.timeout_s = refresh_s, push_s, wait_s, timeout_s
        self.known: set[str] = set()  # replicas the server lists
        self.ready: dict[str, int] = {}  # ready replica -> requests in flight
        self.changed = asyncio.Event()
        self.count = 0  # requests received since the last push
        self.app = Starlette(
            routes=[Route("/{path:path}", self.forward, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=2.0))
        tasks = [asyncio.create_task(self._refresh()), asyncio.create_task(self._push())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await self.client.aclose()

    async def _refresh(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                await self._refresh_once()
            await asyncio.sleep(self.refresh_s)

    async def _refresh_once(self) -> None:
        url = f"{self.server}/v1/services/{self.service}/endpoints"
        response = await self.client.get(url, headers=self.headers)
        response.raise_for_status()
        self.known = {e["url"] for e in response.json()}
        for gone in set(self.ready) - self.known:
            del self.ready[gone]
        waiting = [u for u in self.known if u not in self.ready]
        probes = await asyncio.gather(*(self._probe(u) for u in waiting))
        for url, ok in zip(waiting, probes, strict=True):
            if ok and url in self.known:
                self.ready[url] = 0
        if any(probes):
            self.changed.set()

    async def _probe(self, url: str) -> bool:
        try:
            response = await self.client.get(f"{url}/health", timeout=1.0)
        except httpx.HTTPError as err:
            log.debug("replica %s is not ready: %s", url, err)
            return False
        return response.status_code == 200

    async def _push(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.push_s)
            now = time.monotonic()
            rate, self.count = self.count / max(now - last, 1e-9), 0
            last = now
            with contextlib.suppress(httpx.HTTPError):
                await self.client.post(
                    f"{self.server}/v1/services/{self.service}/demand",
                    headers=self.headers,
                    json={"requests_per_s": rate},
                )

    async def _pick(self) -> str | None:
        """The ready replica with the fewest requests in flight, waiting for one if none is."""
        deadline = time.monotonic() + self.wait_s
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(left, self.refresh_s))
        return min(self.ready, key=lambda u: self.ready[u])

    async def forward(self, request: Request) -> Response:
        self.count += 1
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        for _ in range(3):
            url = await self._pick()
            if url is None:
                return Response(f"no ready replica of {self.service}\n", status_code=503)
            self.ready[url] += 1
            try:
                answer = await self.client.request(
                    request.method,
                    f"{url}/{request.path_params['path']}",
                    params=request.query_params,
                    content=body,
                    headers=headers,
                )
            except httpx.TransportError as err:  # (refused, reset or cut: gone or going)
                log.info("replica %s did not answer (%s): trying another", url, err)
                self.ready.pop(url, None)  # (probed again before its next request)
                continue
            finally:
                if url in self.ready:
                    self.ready[url] -= 1
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            return Response(answer.content, status_code=answer.status_code, headers=out)
        return Response(f"no replica of {self.service} answered\n", status_code=502)
