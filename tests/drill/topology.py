"""Production's topology on loopback, for the fault drills (``make drill``, tests/drill/).

What compose runs, with this machine's parts: 3 Galera nodes on production's
``galera.cnf`` (tests.infra.galera), each with its clustercheck responder; HAProxy on
production's ``haproxy.cfg`` (addresses and ports rewritten, nothing else); a Redis of its
own (Celery broker and the shared cache, so it can be stopped); the Kafka-protocol broker
(librdkafka's mock cluster: no Apache Kafka runs here); and PayFlow's processes on
``payflow.settings`` with ``DEBUG=False``: gunicorn, the Celery worker and beat, the
outbox relay, the audit sequencer (the only one with the signing key) and a witness, each
logged in to MariaDB as its own account, every secret a file
(``python -m payflow.config --deployment-secrets``).

Differences from compose, each because of this machine: no TLS proxy, so
``SECURE_SSL_REDIRECT`` is off (the clients send ``X-Forwarded-Proto: https`` as the proxy
would); the archive is a local directory (no MinIO); the loopback nodes use rsync SST and
smaller caches; one mock broker process stands for the 3 Kafka nodes.

Also a CLI, to poke at it by hand: ``python -m tests.drill.topology /tmp/drill``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from audit import tlog
from payflow import config
from tests.infra.galera import (
    ClustercheckResponders,
    GaleraCluster,
    free_ports,
    image_first_start,
)
from tests.infra.kafka import KafkaBroker
from tests.infra.processes import LoggedProcess

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "docker" / "haproxy" / "haproxy.cfg"
DATABASE = "payflow"
LOG_ORIGIN = "payflow.drill.localhost/audit"
# compose's accounts (docker/compose.yaml): who logs in as whom, with which password file.
ACCOUNTS = {
    "owner": ("payflow_migrate", "db_migrate_password"),
    "app": ("payflow", "db_app_password"),
    "archiver": ("payflow_archiver", "db_archiver_password"),
    "sequencer": ("payflow_sequencer", "db_sequencer_password"),
}


class Service(LoggedProcess):
    """A long-running process of the topology, started from a clean environment (nothing
    of the caller's leaks in), restartable after a kill."""

    stop_timeout = 15.0

    def __init__(self, workdir: Path, name: str, argv: list[str], env: dict[str, str]) -> None:
        super().__init__(workdir)
        self.name = name
        self.argv = argv
        self.env = env
        self.log_name = f"{name}.log"

    def start(self) -> Service:
        self.process = subprocess.Popen(
            self.argv,
            stdout=self.open_log(),
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,
        )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.running:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-up of any kind."""
        if self.running:
            self.process.kill()
            self.process.wait(timeout=10)


def _wait_port(port: int, timeout: float, what: str, process: Service | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.running:
            raise RuntimeError(f"{what} exited:\n{process.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not listening on {port}")


def haproxy_config(production: str, nodes: list[tuple[int, int]], port: int, health: int) -> str:
    """Production's haproxy.cfg with loopback addresses: node ``i`` at ``nodes[i]`` =
    (client port, clustercheck port); no Docker DNS resolver; logs to stdout."""
    text = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S)", "", production)
    text = text.replace(" resolvers docker", "").replace(" init-addr last,libc,none", "")
    text = text.replace("bind :3306", f"bind 127.0.0.1:{port}")
    text = text.replace("bind :8404", f"bind 127.0.0.1:{health}")
    for index, (client, check) in enumerate(nodes, start=1):
        text = re.sub(
            rf"server galera{index} galera{index}:3306 check",
            f"server galera{index} 127.0.0.1:{client} check port {check}",
            text,
        )
    if "galera1:3306" in text or "resolvers" in text:
        raise AssertionError("haproxy.cfg changed shape: update tests/drill/topology.py")
    return text


class Topology:
    """Start with ``start()``, stop with ``stop()``; the faults act on its parts."""

    def __init__(self, workdir: Path, *, web_workers: int = 2) -> None:
        self.workdir = Path(workdir)
        self.web_workers = web_workers
        self.services: dict[str, Service] = {}
        self.galera: GaleraCluster | None = None
        self.responders: ClustercheckResponders | None = None
        self.kafka: KafkaBroker | None = None
        (self.haproxy_port, self.haproxy_health, self.redis_port, self.web_port) = free_ports(4)
        self.secrets = self.workdir / "secrets"
        self.witness_key = self.workdir / "witness.key"

    # --- environment --------------------------------------------------------------------
    def env(self, role: str = "app", **extra: str) -> dict[str, str]:
        """A PayFlow process's environment, as compose gives it (docker/compose.yaml)."""
        user, password = ACCOUNTS[role]
        secret = self.secrets
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "payflow.settings",
            "PAYFLOW_ENV_FILE": "",
            "PAYFLOW_VAR_DIR": str(self.workdir / "var" / role),
            "DEBUG": "False",
            "DATABASE_URL": f"mysql://{user}@127.0.0.1:{self.haproxy_port}/{DATABASE}",
            "DATABASE_PASSWORD_FILE": str(secret / password),
            "DATABASE_WSREP_SYNC_WAIT": "1",
            # A request waits at most this for a lock or a node; then it answers 503.
            "DATABASE_CONN_MAX_AGE": "60",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CACHE_URL": f"rediscache://127.0.0.1:{self.redis_port}/1",
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap if self.kafka else "",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "TLS_PROXY": "True",
            "SECURE_SSL_REDIRECT": "False",
            "LOG_FORMAT": "json",
            "SECRET_KEY_FILE": str(secret / "secret_key"),
            "VAULT_KEYS_FILE": str(secret / "vault_keys"),
            "CARD_FINGERPRINT_KEY_FILE": str(secret / "card_fingerprint_key"),
            "AUDIT_PUBLIC_KEY_FILE": str(secret / "audit_public_key"),
            "METRICS_TOKEN_FILE": str(secret / "metrics_token"),
            "AUDIT_ARCHIVE_DIR": str(self.workdir / "archive"),
            "API_THROTTLE_RATE": "1000/second",
            # Short timings, so a drill sees its in-flight work resolved in seconds (the
            # settings check they still hold together: claim and recovery ≥ 3 timeouts).
            "ACQUIRER_TIMEOUT_SECONDS": "2",
            "IDEMPOTENCY_LOCK_SECONDS": "6",
            "PAYMENT_RECOVERY_AFTER_SECONDS": "6",
            "ACQUIRER_RETRY_BASE_SECONDS": "1",
            "ACQUIRER_RETRY_MAX_SECONDS": "5",
            "OUTBOX_RETRY_BASE_SECONDS": "0.2",
            "OUTBOX_RETRY_MAX_SECONDS": "2",
            "OUTBOX_DELIVERY_TIMEOUT_MS": "5000",
        }
        env.update(extra)
        return env

    def manage(self, role: str, *args: str, timeout: float = 300, **extra: str):
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env(role, **extra),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    # --- start / stop -------------------------------------------------------------------
    def start(self) -> Topology:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # mariadbd and the probes run as the mysql user
        config.write_deployment_secrets(self.secrets, LOG_ORIGIN)
        self.witness_key.write_text(tlog.generate_witness_key("drill.witness.localhost") + "\n")
        self.galera = GaleraCluster(
            self.workdir / "galera", timeouts=GaleraCluster.GALERA_DEFAULT_TIMEOUTS
        ).start()
        self.responders = ClustercheckResponders(self.galera)
        self._start_haproxy()
        self._create_accounts()
        self._start_redis()
        self.kafka = KafkaBroker(self.workdir / "kafka").start()
        for step in (("migrate", "--noinput"), ("audit_grants", "--apply")):
            result = self.manage("owner", *step)
            if result.returncode != 0:
                raise RuntimeError(f"{step[0]} failed:\n{result.stderr[-3000:]}")
        self._start_app()
        return self

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            if service.running:
                service.signal(signal.SIGCONT)
            with contextlib.suppress(Exception):
                service.stop()
        if self.kafka:
            with contextlib.suppress(Exception):
                self.kafka.process.send_signal(signal.SIGCONT)
            self.kafka.stop()
        if self.responders:
            self.responders.stop()
        if self.galera:
            for node in self.galera.nodes:
                if node.process and node.process.poll() is None:
                    node.process.send_signal(signal.SIGCONT)
            self.galera.stop(remove=False)

    def _start_haproxy(self) -> None:
        nodes = [
            (node.port, port)
            for node, port in zip(self.galera.nodes, self.responders.ports, strict=True)
        ]
        cfg = self.workdir / "haproxy.cfg"
        cfg.write_text(
            haproxy_config(HAPROXY_CFG.read_text(), nodes, self.haproxy_port, self.haproxy_health)
        )
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        service = Service(self.workdir, "haproxy", [haproxy, "-db", "-f", str(cfg)], {})
        self.services["haproxy"] = service.start()
        _wait_port(self.haproxy_port, 30, "haproxy", service)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the writer node is admitted
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.haproxy_health}/healthz"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.5)
        raise TimeoutError(f"haproxy admitted no Galera node:\n{service.log_tail()}")

    def _create_accounts(self) -> None:
        """What the mariadb image does on galera1's first start (schema, owner, accounts)."""
        files = {user: self.secrets / password for user, password in ACCOUNTS.values()}
        owner, owner_file = ACCOUNTS["owner"]
        password = (self.secrets / owner_file).read_text().strip()
        image_first_start(self.galera.nodes[0], DATABASE, owner, password, files)

    def _start_redis(self) -> None:
        (self.workdir / "redis").mkdir(exist_ok=True)
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(self.workdir / "redis"),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        ]  # fmt: skip
        service = self.services.get("redis") or Service(self.workdir, "redis", argv, {})
        self.services["redis"] = service.start()
        _wait_port(self.redis_port, 20, "redis", service)

    def _start_app(self) -> None:
        bin_dir = Path(sys.executable).parent
        python = sys.executable
        manage = str(ROOT / "manage.py")
        web_argv = [
            str(bin_dir / "gunicorn"), "payflow.wsgi:application",
            "-c", "python:payflow.gunicorn_conf", "--bind", f"127.0.0.1:{self.web_port}",
            "--workers", str(self.web_workers), "--threads", "4", "--preload",
            "--graceful-timeout", "5", "--timeout", "30",
        ]  # fmt: skip
        metrics = self.workdir / "metrics"
        metrics.mkdir(exist_ok=True)
        sequencer_env = self.env(
            "sequencer", AUDIT_SIGNING_KEY_FILE=str(self.secrets / "audit_signing_key")
        )
        celery = str(bin_dir / "celery")
        definitions = {
            "web": (web_argv, self.env("app", PROMETHEUS_MULTIPROC_DIR=str(metrics))),
            "worker": (
                [celery, "-A", "payflow", "worker", "-l", "INFO", "--pool", "threads",
                 "--concurrency", "2"],
                self.env("app"),
            ),
            "beat": (
                [celery, "-A", "payflow", "beat", "-l", "INFO", "--schedule",
                 str(self.workdir / "celerybeat-schedule")],
                self.env("app"),
            ),
            "relay": ([python, manage, "outbox_relay"], self.env("app")),
            "sequencer": ([python, manage, "audit_sequencer"], sequencer_env),
        }  # fmt: skip
        for name, (argv, env) in definitions.items():
            self.services[name] = Service(self.workdir, name, argv, env).start()
        _wait_port(self.web_port, 60, "gunicorn", self.services["web"])
        self.wait_web()
        witness = [
            python, manage, "audit_witness", "--log-url", f"{self.url}/audit/log/",
            "--public-key", f"@{self.secrets / 'audit_public_key'}",
            "--witness-key", f"@{self.witness_key}",
            "--state", str(self.workdir / "witness.state"), "--interval", "1",
        ]  # fmt: skip
        self.services["witness"] = Service(self.workdir, "witness", witness, self.env()).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def wait_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer,  # noqa: S310
            ):
                if answer.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"gunicorn does not answer:\n{self.services['web'].log_tail()}")

    def restart(self, name: str) -> None:
        service = self.services[name]
        if service.running:
            service.kill()
        if name == "redis":
            self._start_redis()
        else:
            service.start()

    def web_worker_pids(self) -> list[int]:
        master = self.services["web"].process.pid
        found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split()]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    topology = Topology(Path(argv[1])).start()
    print(f"PayFlow on {topology.url}; haproxy 127.0.0.1:{topology.haproxy_port}; Ctrl-C stops")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        topology.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
