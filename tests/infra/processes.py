"""What every real process the fixtures start has in common: a log file in its work
directory, a polite stop that turns into a kill, and a log tail for error messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


class LoggedProcess:
    """A child process writing ``workdir / log_name``; subclasses set ``log_name`` and
    start ``self.process``."""

    log_name = "process.log"
    stop_timeout = 20.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    def open_log(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        return open(self.log_path, "ab")  # owned by the child process

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class ManageProcess(LoggedProcess):
    """``manage.py <command>`` as a real process with the test settings (the relay, …)."""

    def __init__(self, workdir: Path, command: list[str], env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.command = command
        self.env = env
        self.log_name = f"{command[0]}.log"

    def start(self) -> ManageProcess:
        base = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, str(base / "manage.py"), *self.command],
            stdout=self.open_log(),
            stderr=subprocess.STDOUT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **self.env},
            cwd=base,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind (a crash)."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
