"""A real Celery worker process on Redis, pointed at the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery


class CeleryWorker:
    def __init__(self, app: Celery, workdir: Path, env: dict[str, str]) -> None:
        self.app = app
        self.workdir = workdir
        self.env = env
        self.process: subprocess.Popen | None = None
        self.node_name = f"test-{os.getpid()}@localhost"

    def start(self, timeout: float = 60) -> CeleryWorker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "worker.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "payflow",
                "worker",
                "--loglevel",
                "INFO",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--hostname",
                self.node_name,
                "--without-gossip",
                "--without-mingle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_tail()}")
            replies = self.app.control.ping(destination=[self.node_name], timeout=0.5)
            if replies:
                return self
        raise TimeoutError(f"worker did not answer ping:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / "worker.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )
