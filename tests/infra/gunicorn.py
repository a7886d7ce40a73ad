"""A real gunicorn serving PayFlow on loopback, whose workers the crash tests kill -9."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings

from tests.infra.processes import LoggedProcess


def database_url() -> str:
    """The test database's URL, for processes started outside pytest."""
    database = settings.DATABASES["default"]
    return (
        f"mysql://{database['USER']}:{database['PASSWORD']}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 3306}/{database['NAME']}"
    )


def gunicorn_env(kafka_bootstrap: str, **extra: str) -> dict[str, str]:
    """What a gunicorn serving the test database needs in its environment."""
    return {
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(settings.BASE_DIR),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "API_THROTTLE_RATE": "1000/second",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn(LoggedProcess):
    """``gunicorn payflow.wsgi`` with ``workers`` processes, started from ``env``.

    ``--preload``: workers fork from a master that has imported the app, so a killed
    worker's replacement is serving again within a second.
    """

    log_name = "gunicorn.log"

    def __init__(self, workdir: Path, env: dict[str, str], workers: int = 2) -> None:
        super().__init__(workdir)
        self.env = env
        self.workers = workers
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Gunicorn:
        log = self.open_log()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "payflow.wsgi:application",
                "-c",
                "python:payflow.gunicorn_conf",
                "--access-logfile",
                "-",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                "2",
                "--preload",
                "--graceful-timeout",
                "5",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout: float = 30) -> None:
        """Until /healthz answers 200 with every worker up; raises with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_tail()}")
            if len(self.worker_pids()) == self.workers:
                with (
                    contextlib.suppress(OSError, urllib.error.URLError),
                    urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response,  # noqa: S310 - http://127.0.0.1
                ):
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"gunicorn did not serve within {timeout}s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        result = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in result.stdout.split()]

    def kill_workers(self) -> list[int]:
        """SIGKILL every worker (the master forks new ones)."""
        pids = self.worker_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def post(
        self, path: str, body: dict, *, secret: str, key: str, fault: str = "", timeout=30
    ) -> tuple[int | None, dict | None]:
        """POST JSON; (status, body), or (None, None) when the connection died with the
        worker (no response at all)."""
        headers = {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        }
        if fault:
            headers["X-PayFlow-Fault"] = fault
        request = urllib.request.Request(  # noqa: S310 - always http://127.0.0.1
            f"{self.url}{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except (ConnectionError, http.client.HTTPException):
            return None, None
        except urllib.error.URLError as error:
            if isinstance(error.reason, OSError):
                return None, None
            raise
