"""Small real HTTP backends on loopback for the adapter tests (threaded stdlib servers)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from servicenet.lb.model import Endpoint


class Backend:
    def __init__(self, name: str, status: int = 200, delay: float = 0.0) -> None:
        self.name = name
        self.status = status
        self.delay = delay
        self.hits = 0
        self.headers: list[dict[str, str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                if outer.delay:
                    time.sleep(outer.delay)
                body = outer.name.encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *a: object) -> None:
                pass

        class S(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a hedged request the client abandoned: a broken pipe is expected

        self.server = S(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, hostname=self.name)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def backends(*specs: tuple[str, int, float]) -> Iterator[list[Backend]]:
    bs = [Backend(n, s, d) for n, s, d in specs]
    try:
        yield bs
    finally:
        for b in bs:
            b.close()
