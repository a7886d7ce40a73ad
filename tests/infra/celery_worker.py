"""A real Celery worker process on Redis, pointed at the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from celery import Celery

from tests.infra.processes import LoggedProcess


class CeleryWorker(LoggedProcess):
    log_name = "worker.log"

    def __init__(self, app: Celery, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.app = app
        self.env = env
        self.node_name = f"test-{os.getpid()}@localhost"

    def start(self, timeout: float = 60) -> CeleryWorker:
        log = self.open_log()
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
