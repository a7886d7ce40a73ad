"""Static checks of the production-shaped Docker stack in docker/.

No Docker engine is needed: the compose file, the Galera and HAProxy configs and the
Dockerfile are read as text/YAML. Only the first tests ask the `docker compose` CLI to
parse the file, and skip when the CLI has no compose plugin. Nothing here imports Django
or the project.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.missing import cannot_run_here, missing_part

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
GALERA_CNF = DOCKER_DIR / "galera" / "galera.cnf"
CLUSTERCHECK = DOCKER_DIR / "galera" / "clustercheck.sh"
HAPROXY_CFG = DOCKER_DIR / "haproxy" / "haproxy.cfg"

GALERA_NODES = ("galera1", "galera2", "galera3")
KAFKA_NODES = ("kafka1", "kafka2", "kafka3")
APP_SERVICES = ("web", "worker", "archiver", "beat", "relay", "sequencer", "webhooks")
ONE_SHOT_APP_SERVICES = ("migrate", "topics")
ONE_SHOT_SERVICES = (*ONE_SHOT_APP_SERVICES, "minio-init")
EXPECTED_SERVICES = (
    *GALERA_NODES,
    "haproxy",
    *KAFKA_NODES,
    "redis",
    "minio",
    *ONE_SHOT_SERVICES,
    *APP_SERVICES,
)
LONG_RUNNING_SERVICES = tuple(s for s in EXPECTED_SERVICES if s not in ONE_SHOT_SERVICES)
# Who logs in to MariaDB as whom (docker/README.md, database accounts).
DATABASE_ACCOUNTS = {
    "migrate": ("payflow_migrate", "db_migrate_password"),
    "archiver": ("payflow_archiver", "db_archiver_password"),
    "sequencer": ("payflow_sequencer", "db_sequencer_password"),
}
DEFAULT_ACCOUNT = ("payflow", "db_app_password")
SECRET_NAME_PATTERN = re.compile(r"SECRET|PASSWORD|TOKEN|(_KEY|_KEYS)$")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def healthcheck_text(name: str) -> str:
    test = service(name)["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def command_text(name: str) -> str:
    command = service(name).get("command", "")
    return command if isinstance(command, str) else " ".join(command)


def interpolations(text: str, variable: str) -> list[str]:
    """What follows the name in every `${variable...}` of ``text`` (e.g. ':?set it')."""
    return re.findall(r"\$\{" + re.escape(variable) + r"(?![A-Za-z0-9_])([^}]*)\}", text)


def galera_options() -> dict[str, str]:
    """Every option of galera.cnf, all groups together, names with underscores."""
    parser = configparser.ConfigParser(interpolation=None, allow_no_value=True)
    parser.read_string(GALERA_CNF.read_text())
    options: dict[str, str] = {}
    for section in parser.sections():
        for name, value in parser.items(section):
            options[name.replace("-", "_")] = (value or "").strip().strip('"')
    return options


def haproxy_sections() -> dict[str, list[str]]:
    """haproxy.cfg as {'backend galera_writer': [its lines], ...}, comments dropped."""
    sections: dict[str, list[str]] = {}
    current = None
    for raw in HAPROXY_CFG.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = " ".join(line.split())
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
    return sections


def mysql_backend_lines() -> list[str]:
    """The lines of the backend that the frontend bound to port 3306 sends traffic to."""
    sections = haproxy_sections()
    for header, lines in sections.items():
        if header.startswith(("frontend", "listen")) and any(
            re.fullmatch(r"bind\s+\S*:3306\b.*", line) for line in lines
        ):
            if header.startswith("listen"):
                return lines
            backend = next(line.split()[1] for line in lines if line.startswith("default_backend"))
            return sections[f"backend {backend}"]
    raise AssertionError("haproxy.cfg has no frontend bound to port 3306")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def env_names(arguments: str) -> list[str]:
    """Variable names set by one ENV instruction (KEY=VALUE pairs or legacy KEY VALUE)."""
    words = shlex.split(arguments)
    if "=" not in words[0]:
        return [words[0]]
    return [word.split("=", 1)[0] for word in words]


# --- the docker compose CLI (skipped where it is missing) ------------------------------


@pytest.fixture(scope="module")
def docker_compose() -> list[str]:
    docker = shutil.which("docker")
    if docker is None:
        missing_part("no `docker` client on PATH, so `docker compose config` cannot be run")
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        reason = (probe.stderr or probe.stdout).strip().splitlines()[:1]
        # No Debian package has the plugin: this machine cannot have it (skipped in CI too).
        cannot_run_here(
            "the docker client has no compose plugin (`docker compose version` failed: "
            f"{reason[0] if reason else 'no output'}), so `docker compose config` cannot be run"
        )
    # --env-file /dev/null: a developer's docker/.env must not decide the outcome.
    return [docker, "compose", "--env-file", os.devnull, "-f", str(COMPOSE_FILE)]


def test_docker_compose_accepts_the_file(docker_compose, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in compose()["secrets"]:
        (secrets / name).write_text("x\n")
    result = subprocess.run(
        [*docker_compose, "config", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "PAYFLOW_SECRETS_DIR": str(secrets)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr


# --- compose.yaml ---------------------------------------------------------------------


def test_compose_defines_every_service_of_the_stack():
    assert set(compose()["services"]) == set(EXPECTED_SERVICES)


@pytest.mark.parametrize("name", LONG_RUNNING_SERVICES)
def test_every_long_running_service_has_a_healthcheck(name):
    healthcheck = service(name).get("healthcheck")

    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False)
    assert healthcheck["test"]
    assert healthcheck["test"][0] != "NONE"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_wait_for_the_one_shot_jobs_and_for_healthy_proxy_and_redis(name):
    depends_on = service(name)["depends_on"]

    for job in ("migrate", "topics", "minio-init"):
        assert depends_on[job] == {"condition": "service_completed_successfully"}, job
    for dependency in ("haproxy", "redis"):
        assert depends_on[dependency] == {"condition": "service_healthy"}, dependency


def test_migrate_runs_the_migrations_then_grants_each_account_its_tables():
    migrate = service("migrate")

    assert command_text("migrate") == (
        "sh -c python manage.py migrate --noinput && python manage.py audit_grants --apply"
    )
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["haproxy"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", [*ONE_SHOT_APP_SERVICES, *APP_SERVICES])
def test_app_services_are_built_from_the_project_dockerfile(name):
    build = service(name)["build"]

    assert build["context"] == ".."
    assert build["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_app_services_share_one_configuration_through_a_yaml_anchor():
    text = COMPOSE_FILE.read_text()
    shared = service("worker")["environment"]
    # What a service may set differently from the shared configuration, and why.
    own = {
        "migrate": {"DATABASE_URL", "DATABASE_PASSWORD_FILE"},  # the schema's owner
        "archiver": {  # its account, and the bucket's write key
            "DATABASE_URL",
            "DATABASE_PASSWORD_FILE",
            "AUDIT_ARCHIVE_S3_ACCESS_KEY_ID",
            "AUDIT_ARCHIVE_S3_SECRET_ACCESS_KEY_FILE",
        },
        "sequencer": {"DATABASE_URL", "DATABASE_PASSWORD_FILE", "AUDIT_SIGNING_KEY_FILE"},
        "web": {"PROMETHEUS_MULTIPROC_DIR", "FORWARDED_ALLOW_IPS"},
    }

    assert re.search(r"^x-app[\w-]*: &app\b", text, re.MULTILINE)
    for name in (*ONE_SHOT_APP_SERVICES, *APP_SERVICES):
        environment = service(name)["environment"]
        differs = {k for k in {*environment, *shared} if environment.get(k) != shared.get(k)}
        assert differs <= own.get(name, set()), (name, differs)


@pytest.mark.parametrize("name", [*ONE_SHOT_APP_SERVICES, *APP_SERVICES])
def test_each_app_service_logs_in_as_its_own_account_with_its_own_password_file(name):
    account, secret = DATABASE_ACCOUNTS.get(name, DEFAULT_ACCOUNT)
    environment = service(name)["environment"]

    assert environment["DATABASE_URL"] == f"mysql://{account}@haproxy:3306/payflow"
    assert environment["DATABASE_PASSWORD_FILE"] == f"/run/secrets/{secret}"
    database_secrets = {s for s in service(name)["secrets"] if s.startswith("db_")}
    assert database_secrets == {secret}


def test_only_the_sequencer_is_given_the_audit_signing_key():
    for name in (*ONE_SHOT_APP_SERVICES, *APP_SERVICES):
        environment = service(name)["environment"]
        assert "AUDIT_SIGNING_KEY" not in environment, name
        has_secret = "audit_signing_key" in service(name).get("secrets", [])
        assert has_secret == (name == "sequencer"), name
        assert ("AUDIT_SIGNING_KEY_FILE" in environment) == (name == "sequencer"), name


def test_app_services_reach_the_stack_through_the_environment():
    environment = service("web")["environment"]

    assert environment["DEBUG"] == "False"
    assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert environment["CACHE_URL"].startswith("rediscache://redis:6379/")
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka1:9092,kafka2:9092,kafka3:9092"
    assert environment["DATABASE_WSREP_SYNC_WAIT"] == "1"
    assert environment["AUDIT_ARCHIVE_STORAGE"] == "s3"
    assert environment["AUDIT_ARCHIVE_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_web_is_set_up_for_the_tls_proxy_and_sums_its_workers_metrics():
    environment = service("web")["environment"]

    assert environment["CSRF_TRUSTED_ORIGINS"] == "https://${PAYFLOW_HOSTNAME:-localhost}"
    assert environment["TLS_PROXY"] == "True"
    assert environment["FORWARDED_ALLOW_IPS"] == "*"
    directory = environment["PROMETHEUS_MULTIPROC_DIR"]
    assert any(mount.startswith(f"{directory}:") for mount in service("web")["tmpfs"])


def test_no_secret_is_in_the_environment_every_one_is_a_mounted_file():
    declared = set(compose()["secrets"])
    for name, definition in compose()["services"].items():
        mounted = set(definition.get("secrets", []))
        assert mounted <= declared, name
        for variable, value in dict(definition.get("environment", {})).items():
            if SECRET_NAME_PATTERN.search(variable.removesuffix("_FILE")):
                assert variable.endswith("_FILE"), (name, variable)
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value) == f"/run/secrets/{secret}", (name, variable)
                assert secret in mounted, (name, variable)
    for definition in compose()["secrets"].values():
        assert definition["file"].startswith("${PAYFLOW_SECRETS_DIR:-./secrets}/")


def test_the_secrets_directory_is_kept_out_of_git_and_the_image():
    assert "docker/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "docker/secrets" in (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()


def test_web_healthcheck_probes_the_readiness_endpoint():
    assert "http://127.0.0.1:8000/readyz" in healthcheck_text("web")


def test_worker_archiver_and_beat_run_celery_for_payflow():
    assert command_text("worker").startswith("celery -A payflow worker -l INFO -Q celery")
    assert command_text("archiver").startswith("celery -A payflow worker -l INFO -Q audit-archive")
    assert service("web")["environment"]["AUDIT_ARCHIVER_QUEUE"] == "audit-archive"
    assert command_text("beat").startswith("celery -A payflow beat -l INFO")


def test_no_node_is_told_to_bootstrap_each_decides_from_its_state():
    for node in GALERA_NODES:
        assert "--wsrep-new-cluster" not in command_text(node)
        # Nodes start together: with depends_on between them, a node waiting for the
        # one that stopped last could never see it start.
        assert not set(service(node).get("depends_on", [])) & set(GALERA_NODES)
        first = service(node)["environment"].get("GALERA_FIRST_BOOTSTRAP")
        assert first == ("1" if node == "galera1" else None), node
    entrypoint = (DOCKER_DIR / "galera" / "entrypoint.sh").read_text()
    assert "galera-bootstrap.sh" in entrypoint
    assert "--wsrep-new-cluster" in entrypoint
    assert not (DOCKER_DIR / "galera1-rejoin.yaml").exists()


@pytest.mark.parametrize("node", GALERA_NODES)
def test_galera_nodes_create_the_accounts_from_secret_files(node):
    environment = service(node)["environment"]

    assert environment["MARIADB_USER"] == "payflow_migrate"
    assert environment["MARIADB_PASSWORD_FILE"] == "/run/secrets/db_migrate_password"
    assert environment["MARIADB_ROOT_PASSWORD_FILE"] == "/run/secrets/db_root_password"
    assert "./galera/initdb:/docker-entrypoint-initdb.d:ro" in service(node)["volumes"]
    for variable in (
        "PAYFLOW_APP_DB_PASSWORD_FILE",
        "PAYFLOW_ARCHIVER_DB_PASSWORD_FILE",
        "PAYFLOW_SEQUENCER_DB_PASSWORD_FILE",
    ):
        assert variable in (DOCKER_DIR / "galera/initdb/10-payflow-accounts.sh").read_text()
        assert environment[variable].removeprefix("/run/secrets/") in service(node)["secrets"]


def test_kafka_is_three_nodes_that_never_create_a_topic_on_their_own():
    for node in KAFKA_NODES:
        environment = service(node)["environment"]
        assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert environment["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert environment["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3
        assert environment["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
        voters = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert [voter.split("@")[1] for voter in voters] == [f"{n}:9093" for n in KAFKA_NODES]
    assert command_text("topics") == (
        "python manage.py kafka_topics --partitions 12 --replication-factor 3 "
        "--min-insync-replicas 2"
    )
    for node in KAFKA_NODES:
        assert service("topics")["depends_on"][node] == {"condition": "service_healthy"}


def test_the_audit_archive_bucket_has_object_lock_and_two_keys():
    script = (DOCKER_DIR / "minio" / "init.sh").read_text()

    assert "mc mb --ignore-existing --with-lock local/payflow-audit" in script
    assert 'retention set --default COMPLIANCE "${AUDIT_RETENTION_DAYS}d"' in script
    assert service("minio-init")["environment"]["AUDIT_RETENTION_DAYS"] == (
        "${AUDIT_RETENTION_DAYS:-2557}"  # 7 years
    )
    for name in (*ONE_SHOT_APP_SERVICES, *APP_SERVICES):
        environment = service(name)["environment"]
        key = "archiver" if name == "archiver" else "reader"
        assert environment["AUDIT_ARCHIVE_S3_ACCESS_KEY_ID"] == f"payflow-{key}", name
        assert environment["AUDIT_ARCHIVE_S3_SECRET_ACCESS_KEY_FILE"] == (
            f"/run/secrets/s3_{key}_secret"
        ), name
    assert "minio-data" in compose()["volumes"]


@pytest.mark.parametrize("node", GALERA_NODES)
def test_each_galera_node_keeps_its_data_in_its_own_named_volume(node):
    volumes = service(node)["volumes"]
    data = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/var/lib/mysql"]

    assert data == [f"{node}-data"]
    assert f"{node}-data" in compose()["volumes"]


@pytest.mark.parametrize("node", GALERA_NODES)
def test_each_galera_node_mounts_the_shared_config_read_only(node):
    assert service(node)["image"].startswith("mariadb:10.11")
    assert "./galera/galera.cnf:/etc/mysql/conf.d/galera.cnf:ro" in service(node)["volumes"]


# --- galera.cnf -----------------------------------------------------------------------


def test_galera_nodes_flush_the_redo_log_and_the_binary_log_at_every_commit():
    options = galera_options()

    assert options["innodb_flush_log_at_trx_commit"] == "1"
    assert options["sync_binlog"] == "1"
    assert options["log_bin"]
    # migrate (no SUPER) creates the audit triggers with the binary log on.
    assert options["log_bin_trust_function_creators"].upper() in {"ON", "1"}


def test_galera_nodes_use_the_settings_galera_requires():
    options = galera_options()

    assert options["binlog_format"].upper() == "ROW"
    assert options["innodb_autoinc_lock_mode"] == "2"
    assert options["wsrep_on"].upper() in {"ON", "1"}
    assert options["wsrep_sst_method"] in {"rsync", "mariabackup"}


def test_galera_cluster_address_lists_all_three_nodes():
    address = galera_options()["wsrep_cluster_address"]

    assert address.startswith("gcomm://")
    assert sorted(address.removeprefix("gcomm://").split(",")) == list(GALERA_NODES)


# --- haproxy.cfg ----------------------------------------------------------------------


def test_haproxy_sends_traffic_to_exactly_one_active_node_with_the_others_as_backup():
    servers = [line.split() for line in mysql_backend_lines() if line.startswith("server ")]
    active = [words[1] for words in servers if "backup" not in words[3:]]
    backups = [words[1] for words in servers if "backup" in words[3:]]

    assert active == ["galera1"]
    assert sorted(backups) == ["galera2", "galera3"]
    assert all("check" in words[3:] for words in servers)
    # With `option allbackups` every backup would take traffic at once.
    assert "option allbackups" not in mysql_backend_lines()


def test_haproxy_health_check_admits_only_synced_nodes():
    lines = mysql_backend_lines()
    script = CLUSTERCHECK.read_text()

    # HTTP check against the clustercheck responder on port 9200 of each node ...
    assert "option httpchk" in lines
    assert "http-check expect status 200" in lines
    assert any(line.startswith("default-server") and "port 9200" in line for line in lines)
    # ... which answers 200 only for wsrep_local_state 4 (Synced) with wsrep_ready ON.
    assert "WSREP_LOCAL_STATE" in script
    assert '[ "${status% *}" = "4 ON" ]' in script
    assert "9200" in service("galera1")["healthcheck"]["test"][-1]


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_builds_in_stages_so_the_final_image_has_no_compiler():
    stages = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    final_runs = " ".join(args for keyword, args in final_stage() if keyword == "RUN")

    assert len(stages) >= 2
    assert all("python:3.11-slim-bookworm" in args or "PYTHON_IMAGE" in args for args in stages)
    assert not re.search(r"\b(gcc|build-essential|[\w.+-]+-dev)\b", final_runs)
    assert any(keyword == "COPY" and "--from=" in args for keyword, args in final_stage())


def test_final_image_runs_as_a_non_root_user():
    users = [args for keyword, args in final_stage() if keyword == "USER"]

    assert users, "the final stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_final_image_bakes_no_secret_into_env_or_build_args():
    env = [name for k, args in final_stage() if k == "ENV" for name in env_names(args)]
    build_args = [args.split("=")[0] for k, args in dockerfile_instructions() if k == "ARG"]

    for name in (*env, *build_args):
        assert not SECRET_NAME_PATTERN.search(name.removesuffix("_FILE")), name


def test_static_files_are_collected_at_build_time_with_debug_off():
    runs = [args for keyword, args in final_stage() if keyword == "RUN"]

    assert any("manage.py collectstatic --noinput" in run and "DEBUG=False" in run for run in runs)


def test_image_serves_payflow_with_gunicorn_on_port_8000():
    instructions = dict(final_stage())

    assert instructions["EXPOSE"] == "8000"
    assert json.loads(instructions["CMD"]) == [
        "gunicorn",
        "payflow.wsgi:application",
        "-c",
        "python:payflow.gunicorn_conf",  # the access log without the Basic-auth user name
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "4",
        "--access-logfile",
        "-",
    ]


def test_build_context_never_includes_a_dotenv_file():
    ignored = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()

    # `**/`: .dockerignore patterns are anchored at the context root, and compose reads
    # its variables from docker/.env.
    assert "**/.env" in ignored
