"""A tiny model server for the live capacity run: POST /generate with {"context_tokens": c,
"generated_tokens": g} holds one of SLOTS batch slots for c / PREFILL + g / DECODE seconds
(a stated throughput model, scaled so one replica serves a few requests per second), then
answers. It listens on CORRAL_PORT and answers GET /health once its start-up is over. On
SIGTERM it stops being ready, finishes what it holds, and exits."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFILL_TOKENS_PER_S = 20_000.0
DECODE_TOKENS_PER_S = 1_000.0
SLOTS = 2
STARTUP_S = float(os.environ.get("MODEL_STARTUP_S", "2"))

slots = threading.Semaphore(SLOTS)
ready = threading.Event()
busy = [0]  # requests in hand
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(200 if ready.is_set() else 503, {"ready": ready.is_set()})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        service_s = (
            request.get("context_tokens", 0) / PREFILL_TOKENS_PER_S
            + request.get("generated_tokens", 0) / DECODE_TOKENS_PER_S
        )
        with lock:
            busy[0] += 1
        try:
            with slots:
                time.sleep(service_s)
            self._answer(200, {"served_s": service_s})
        finally:
            with lock:
                busy[0] -= 1


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["CORRAL_PORT"])), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    time.sleep(STARTUP_S)  # (loading weights, warming up)
    ready.set()
    stop.wait()
    ready.clear()  # (the proxy sends nothing more; what is in hand is finished)
    while busy[0]:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
