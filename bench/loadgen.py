"""The HTTP load generator: closed loop (saturation) and open loop (constant arrival rate).

Runs in its own process (``python -m bench.loadgen SPEC.json OUT.json``), never inside the
server's, and reports its own CPU time so the report can say what the generator took from
the two cores it shares with the server.

- **Closed loop**: ``concurrency`` keep-alive connections, each sending its next request as
  soon as the previous answer arrives. The completed rate is the server's saturation
  throughput at that concurrency.
- **Open loop**: request *i* is due at ``start + i / rate`` whatever happened before, like
  wrk2's ``-R``. Its latency is measured from that due time, not from when a connection was
  free to send it, so a server stall counts against every request it delayed (no
  coordinated omission). Requests that find no idle connection open a new one (up to
  ``max_connections``; beyond that they queue, still timed from their due time).

Every latency is kept, so percentiles are exact (``bench.stats``), not histogram estimates.
HTTP/1.1 over asyncio streams; a ``Connection: close`` answer (gunicorn's sync worker)
reconnects the next request.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Spec:
    host: str
    port: int
    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None  # may contain {n}: replaced by the request's number
    idempotency_prefix: str | None = None  # Idempotency-Key: <prefix>-<n>
    mode: str = "closed"  # closed | open
    concurrency: int = 8
    rate: float = 0.0  # open loop: requests per second
    duration: float = 5.0
    warmup: float = 1.0  # not counted (closed loop only)
    max_connections: int = 256
    timeout: float = 30.0


@dataclass
class Result:
    started: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    completions: list[float] = field(default_factory=list)  # seconds since start, counted
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0


class Connection:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, payload: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.spec.host, self.spec.port)
        self.writer.write(payload)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def build_request(spec: Spec, number: int) -> bytes:
    body = spec.body.replace("{n}", str(number)).encode() if spec.body is not None else b""
    headers = {"Host": f"{spec.host}:{spec.port}", **spec.headers}
    if spec.idempotency_prefix:
        headers["Idempotency-Key"] = f"{spec.idempotency_prefix}-{number}"
    if spec.body is not None:
        headers["Content-Length"] = str(len(body))
    head = f"{spec.method} {spec.path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode() + b"\r\n" + body


class Runner:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.result = Result()
        self.counter = 0
        self.idle: list[Connection] = []
        self.open_connections = 0
        self.slots: asyncio.Semaphore | None = None

    def _next_payload(self) -> bytes:
        self.counter += 1
        return build_request(self.spec, self.counter)

    async def _one(self, connection: Connection, due: float, counted: bool) -> None:
        payload = self._next_payload()
        self.result.sent += 1
        try:
            status = await asyncio.wait_for(connection.request(payload), self.spec.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            connection.close()
            if counted:
                name = type(exc).__name__
                self.result.errors[name] = self.result.errors.get(name, 0) + 1
            return
        done = time.perf_counter()
        if counted:
            self.result.latencies_ms.append((done - due) * 1000)
            self.result.completions.append(done - self.result.started)
            key = str(status)
            self.result.statuses[key] = self.result.statuses.get(key, 0) + 1

    async def closed_loop(self) -> None:
        spec = self.spec
        begin = time.perf_counter()
        self.result.started = begin + spec.warmup
        stop = self.result.started + spec.duration

        async def client() -> None:
            connection = Connection(spec)
            while True:
                now = time.perf_counter()
                if now >= stop:
                    break
                await self._one(connection, now, counted=now >= self.result.started)
            connection.close()

        await asyncio.gather(*(client() for _ in range(spec.concurrency)))

    async def open_loop(self) -> None:
        spec = self.spec
        self.slots = asyncio.Semaphore(spec.max_connections)
        self.result.started = time.perf_counter()
        total = int(spec.rate * spec.duration)
        tasks = []
        for number in range(total):
            due = self.result.started + number / spec.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self._open_one(due)))
        await asyncio.gather(*tasks)
        for connection in self.idle:
            connection.close()

    async def _open_one(self, due: float) -> None:
        async with self.slots:
            connection = self.idle.pop() if self.idle else Connection(self.spec)
            await self._one(connection, due, counted=True)
            self.idle.append(connection)


def run(spec: Spec) -> dict[str, Any]:
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall_before = time.perf_counter()
    runner = Runner(spec)
    coroutine = runner.closed_loop() if spec.mode == "closed" else runner.open_loop()
    asyncio.run(coroutine)
    wall = time.perf_counter() - wall_before
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    result = runner.result
    ok = sum(count for status, count in result.statuses.items() if status.startswith("2"))
    elapsed = max(result.completions) if result.completions else spec.duration
    measured = spec.duration if spec.mode == "closed" else max(spec.duration, elapsed)
    return {
        "mode": spec.mode,
        "concurrency": spec.concurrency,
        "rate": spec.rate,
        "duration": spec.duration,
        "sent": result.sent,
        "ok": ok,
        "statuses": result.statuses,
        "errors": result.errors,
        "throughput": ok / measured,
        "latencies_ms": result.latencies_ms,
        "completions": result.completions,
        "loadgen_cpu_seconds": cpu,
        "loadgen_wall_seconds": wall,
        "loadgen_cpu_fraction": cpu / wall if wall else 0.0,
    }


def main(argv: list[str]) -> int:
    with open(argv[1]) as source:
        spec = Spec(**json.load(source))
    with open(argv[2], "w") as out:
        json.dump(run(spec), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
