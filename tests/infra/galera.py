"""A 3-node MariaDB Galera cluster on loopback, from the Debian packages.

Each node runs ``mariadbd`` as the ``mysql`` user with its own data directory, client
port, group-communication ``base_port``, IST port and SST port. Node 1 bootstraps the
cluster (``--wsrep-new-cluster``); nodes 2 and 3 join and receive a full state transfer by
rsync. The server settings are production's (``docker/galera/galera.cnf``: flushing,
binary log, trigger creation without SUPER) with loopback addresses, ports, state transfer
and sizes written after them, so tests and drills run what compose runs. Used by the test
fixtures, the drills and the benchmark; also a small CLI:

    python -m tests.infra.galera start /tmp/galera    # prints the client ports
    python -m tests.infra.galera stop /tmp/galera
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import MySQLdb

GALERA_PROVIDERS = ("/usr/lib/galera/libgalera_smm.so", "/usr/lib/libgalera_smm.so")
PRODUCTION_CONFIG = Path(__file__).resolve().parents[2] / "docker" / "galera" / "galera.cnf"
CLUSTERCHECK = PRODUCTION_CONFIG.with_name("clustercheck.sh")
ACCOUNTS_SCRIPT = PRODUCTION_CONFIG.parent / "initdb" / "10-payflow-accounts.sh"
#: The service accounts docker/galera/initdb/10-payflow-accounts.sh creates, and the
#: variable naming each one's password file.
ACCOUNT_PASSWORD_VARIABLES = {
    "payflow": "PAYFLOW_APP_DB_PASSWORD_FILE",
    "payflow_archiver": "PAYFLOW_ARCHIVER_DB_PASSWORD_FILE",
    "payflow_sequencer": "PAYFLOW_SEQUENCER_DB_PASSWORD_FILE",
}
REQUIRED_BINARIES = ("mariadbd", "mariadb-install-db", "rsync", "wsrep_sst_rsync")


class GaleraUnavailable(Exception):
    """The packages needed for a Galera cluster are not installed."""


def missing_requirements() -> list[str]:
    missing = [binary for binary in REQUIRED_BINARIES if not _which(binary)]
    if not any(Path(path).exists() for path in GALERA_PROVIDERS):
        missing.append("libgalera_smm.so (package galera-4)")
    return missing


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin:/bin")


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class GaleraNode:
    index: int
    root: Path
    port: int
    base_port: int
    ist_port: int
    sst_port: int
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def config(self) -> Path:
        return self.root / "my.cnf"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None, **kwargs) -> MySQLdb.Connection:
        """A raw client connection that waits, before every statement, until this node has
        applied everything committed anywhere in the cluster (``wsrep_sync_wait=15``)."""
        options = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "connect_timeout": 5,
            "init_command": "SET SESSION wsrep_sync_wait=15",
        }
        if database:
            options["database"] = database
        return MySQLdb.connect(**options, **kwargs)

    def status(self) -> dict[str, str]:
        connection = MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=2)
        try:
            cursor = connection.cursor()
            cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
            return {name: value for name, value in cursor.fetchall()}
        finally:
            connection.close()


class GaleraCluster:
    """Start, watch and stop a loopback Galera cluster in ``workdir``."""

    #: Failure detection for tests sharing two cores: a node starved of CPU for seconds is
    #: not evicted. The drills use Galera's defaults (``GALERA_DEFAULT_TIMEOUTS``), as
    #: production does: a dead node is evicted, and the others go on, within seconds.
    TOLERANT_TIMEOUTS = (
        "evs.keepalive_period=PT3S;evs.suspect_timeout=PT30S;evs.inactive_timeout=PT60S;"
        "evs.install_timeout=PT60S"
    )
    GALERA_DEFAULT_TIMEOUTS = (
        "evs.keepalive_period=PT1S;evs.suspect_timeout=PT5S;evs.inactive_timeout=PT15S;"
        "evs.install_timeout=PT15S"
    )

    def __init__(
        self,
        workdir: Path,
        size: int = 3,
        provider: str | None = None,
        timeouts: str = TOLERANT_TIMEOUTS,
    ) -> None:
        self.workdir = Path(workdir)
        self.timeouts = timeouts
        self.size = size
        self.provider = provider or next(
            (path for path in GALERA_PROVIDERS if Path(path).exists()), GALERA_PROVIDERS[0]
        )
        ports = free_ports(4 * size)
        self.nodes = [
            GaleraNode(
                index=i + 1,
                root=self.workdir / f"node{i + 1}",
                port=ports[4 * i],
                base_port=ports[4 * i + 1],
                ist_port=ports[4 * i + 2],
                sst_port=ports[4 * i + 3],
            )
            for i in range(size)
        ]

    # --- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 180) -> GaleraCluster:
        missing = missing_requirements()
        if missing:
            raise GaleraUnavailable("missing: " + ", ".join(missing))
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.datadir.mkdir(parents=True, exist_ok=True)
            node.config.write_text(self._config(node))
        self._install_system_tables(self.nodes[0])
        _chown_mysql(self.workdir)
        deadline = time.monotonic() + timeout
        self._start_node(self.nodes[0], bootstrap=True)
        self._wait_synced(self.nodes[0], deadline)
        self._grant_root_over_tcp(self.nodes[0])
        for node in self.nodes[1:]:
            self._start_node(node, bootstrap=False)
            self._wait_synced(node, deadline)
        self._wait_cluster_size(deadline)
        return self

    def stop(self, remove: bool = True) -> None:
        for node in reversed(self.nodes):
            self._stop_node(node)
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def stop_node(self, index: int) -> None:
        self._stop_node(self.nodes[index - 1])

    def start_node(
        self, index: int, timeout: float = 120, *, bootstrap: bool = False, wait: bool = True
    ) -> None:
        node = self.nodes[index - 1]
        self._start_node(node, bootstrap=bootstrap)
        if wait:
            self.wait_synced(index, timeout)

    def wait_synced(self, index: int, timeout: float = 120) -> None:
        self._wait_synced(self.nodes[index - 1], time.monotonic() + timeout)

    def kill_node(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a node (SIGKILL: a crash; SIGSTOP/SIGCONT: a freeze); after
        SIGKILL, wait until it is gone."""
        process = self.nodes[index - 1].process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        if sig == signal.SIGKILL:
            process.wait(timeout=30)

    # --- helpers ----------------------------------------------------------------------
    def _config(self, node: GaleraNode) -> str:
        members = ",".join(f"127.0.0.1:{other.base_port}" for other in self.nodes)
        # Production's groups first: a later value of the same option wins, and the
        # loopback block below sets only addresses, ports, paths, SST method and sizes.
        production = PRODUCTION_CONFIG.read_text()
        return f"""{production}
[mysqld]
datadir={node.datadir}
socket={node.socket}
pid-file={node.root / "mysqld.pid"}
log-error={node.error_log}
port={node.port}
bind-address=127.0.0.1
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
transaction-isolation=READ-COMMITTED
default_storage_engine=InnoDB
binlog_format=ROW
innodb_autoinc_lock_mode=2
innodb_flush_log_at_trx_commit=1
innodb_buffer_pool_size=128M
innodb_log_file_size=48M
max_connections=300
wsrep_on=ON
wsrep_provider={self.provider}
wsrep_cluster_name=payflow_test
wsrep_cluster_address=gcomm://{members}
wsrep_node_name=node{node.index}
wsrep_node_address=127.0.0.1:{node.base_port}
wsrep_provider_options="base_port={node.base_port};ist.recv_addr=127.0.0.1:{node.ist_port};gcache.size=64M;{self.timeouts}"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:{node.sst_port}
wsrep_slave_threads=2
# Three nodes share two cores with the test suite: a node starved of CPU for a few seconds
# must not be suspected and dropped from the primary component (error 1047 on its clients).
"""

    def _install_system_tables(self, node: GaleraNode) -> None:
        result = subprocess.run(
            [
                _which("mariadb-install-db") or "mariadb-install-db",
                f"--defaults-file={node.config}",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")

    def _start_node(self, node: GaleraNode, *, bootstrap: bool) -> None:
        command = [
            _which("mariadbd") or "mariadbd",
            f"--defaults-file={node.config}",
            "--user=mysql",
        ]
        if bootstrap:
            command.append("--wsrep-new-cluster")
        log = open(node.root / "stdout.log", "ab")  # noqa: SIM115 - owned by the process
        node.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _stop_node(self, node: GaleraNode, timeout: float = 60) -> None:
        process = node.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _wait_synced(self, node: GaleraNode, deadline: float) -> None:
        last = "not started"
        while time.monotonic() < deadline:
            if node.process is not None and node.process.poll() is not None:
                code = node.process.returncode
                raise RuntimeError(f"node{node.index} exited with {code}:\n{self.log_tail(node)}")
            try:
                status = node.status()
                last = status.get("wsrep_local_state_comment", "?")
                if last == "Synced" and status.get("wsrep_ready") == "ON":
                    return
            except MySQLdb.Error as exc:
                last = str(exc)
            time.sleep(0.5)
        raise TimeoutError(f"node{node.index} not Synced ({last}):\n{self.log_tail(node)}")

    def _wait_cluster_size(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            sizes = {int(node.status().get("wsrep_cluster_size", 0)) for node in self.nodes}
            if sizes == {self.size}:
                return
            time.sleep(0.5)
        raise TimeoutError(f"cluster never reached {self.size} nodes")

    @staticmethod
    def _grant_root_over_tcp(node: GaleraNode) -> None:
        # Tests connect over TCP as root without a password, like the machine's main server.
        # This is a throwaway loopback cluster; the statements replicate to the joiners.
        connection = MySQLdb.connect(unix_socket=str(node.socket), user="root")
        try:
            cursor = connection.cursor()
            for host in ("127.0.0.1", "localhost"):
                cursor.execute(f"CREATE USER IF NOT EXISTS 'root'@'{host}' IDENTIFIED BY ''")
                cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'root'@'{host}' WITH GRANT OPTION")
        finally:
            connection.close()

    @staticmethod
    def log_tail(node: GaleraNode, lines: int = 30) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "\n".join(node.error_log.read_text(errors="replace").splitlines()[-lines:])
        return "(no error log)"


class ClustercheckResponders:
    """One clustercheck responder per node, on its own port, as the image runs it: socat
    as the OS user ``mysql`` (unix_socket login as mysql@localhost)."""

    def __init__(self, cluster: GaleraCluster, datadirs: list[Path] | None = None) -> None:
        self.cluster = cluster
        self.ports = free_ports(cluster.size)
        self.processes = []
        datadirs = datadirs or [node.datadir for node in cluster.nodes]
        # A copy the mysql user can read: the checkout may be in a directory only root can
        # enter (a fresh clone under mktemp -d is 0700).
        script = cluster.workdir / "clustercheck.sh"
        shutil.copyfile(CLUSTERCHECK, script)
        script.chmod(0o755)
        for node, port, datadir in zip(cluster.nodes, self.ports, datadirs, strict=True):
            env = {
                "PATH": os.environ["PATH"],
                "CLUSTERCHECK_SOCKET": str(node.socket),
                "CLUSTERCHECK_DATADIR": str(datadir),
            }
            self.processes.append(
                subprocess.Popen(
                    [
                        "runuser", "-u", "mysql", "--",
                        "socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                        f"EXEC:/bin/bash {script}",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no clustercheck responder on port {port}")
                time.sleep(0.05)

    def peers_of(self, index: int) -> str:
        return ",".join(
            f"127.0.0.1:{port}" for i, port in enumerate(self.ports, start=1) if i != index
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)


def image_first_start(
    node: GaleraNode, database: str, owner: str, owner_password: str, files: dict[str, Path]
) -> None:
    """What the official mariadb image does on galera1's first start, on a loopback node:
    the schema and its owner (docker-entrypoint.sh, from MARIADB_DATABASE, MARIADB_USER and
    MARIADB_PASSWORD_FILE), then docker/galera/initdb/10-payflow-accounts.sh, sourced as the
    image does, with the image's ``docker_process_sql`` (root over the socket) stood in for
    by a root client. ``files``: each service account's password file."""
    connection = MySQLdb.connect(host="127.0.0.1", port=node.port, user="root")
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
        cursor.execute(
            f"CREATE USER IF NOT EXISTS '{owner}'@'%%' IDENTIFIED BY %s", [owner_password]
        )
        cursor.execute(f"GRANT ALL ON `{database}`.* TO '{owner}'@'%'")
    finally:
        connection.close()
    env = {
        "PATH": os.environ["PATH"],
        "MARIADB_DATABASE": database,
        "MARIADB_USER": owner,
        **{
            variable: str(files[account])
            for account, variable in ACCOUNT_PASSWORD_VARIABLES.items()
        },
    }
    stand_in = f'docker_process_sql() {{ mariadb -h127.0.0.1 -P{node.port} -uroot "$@"; }}'
    subprocess.run(
        ["bash", "-c", f'{stand_in}; set -e; source "{ACCOUNTS_SCRIPT}"'],
        env=env,
        check=True,
        timeout=60,
    )


def _chown_mysql(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "mysql:mysql", str(path)], check=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in {"start", "stop"}:
        print(__doc__)
        return 2
    workdir = Path(argv[2])
    if argv[1] == "start":
        cluster = GaleraCluster(workdir).start()
        for node in cluster.nodes:
            print(f"node{node.index} 127.0.0.1:{node.port} pid={node.process.pid}")
        (workdir / "ports").write_text(" ".join(str(node.port) for node in cluster.nodes))
        return 0
    for pidfile in sorted(workdir.glob("node*/mysqld.pid"), reverse=True):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
