"""A merchant's webhook receiver on loopback, and the dispatcher as a real process.

``Receiver`` is a real HTTP server (a thread of the test process) that records every
request (body bytes, headers, arrival time) and answers from a script: a list of status
codes for the first requests, then a default; ``hang`` makes it never answer (the
dispatcher's timeout must cut it off).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.infra.processes import ManageProcess


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float


@dataclass
class Receiver:
    script: list[int] = field(default_factory=list)
    default: int = 200
    hang: bool = False
    answer: bytes | None = None  # the body answered (default: "answered <status>")
    #: The first event (by its ``PayFlow-Event-Id``) gets 500 this many times, then the rest.
    fail_first_event: int = 0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received(body, {k.lower(): v for k, v in self.headers.items()}, time.time())
                    )
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                    event = self.headers.get("PayFlow-Event-Id", "")
                    receiver.first_event = receiver.first_event or event
                    if event == receiver.first_event and receiver.fail_first_event:
                        receiver.fail_first_event -= 1
                        status = 500
                if receiver.hang:
                    receiver.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(receiver.answer or f"answered {status}".encode())

            def log_message(self, *args) -> None:
                pass

        self.first_event = ""
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, predicate, timeout: float = 60) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = list(self.received)
            if predicate(seen):
                return seen
            time.sleep(0.1)
        raise TimeoutError(f"the receiver saw {len(self.received)} requests")


class DispatcherProcess(ManageProcess):
    """``manage.py webhook_dispatcher`` with the test settings."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, ["webhook_dispatcher"], env)
        self.log_name = "webhook-dispatcher.log"

    def __enter__(self) -> DispatcherProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
