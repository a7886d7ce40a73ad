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
APP_SERVICES = ("web", "worker", "beat", "relay", "sequencer", "webhooks")
ONE_SHOT_SERVICES = ("migrate",)
EXPECTED_SERVICES = (*GALERA_NODES, "haproxy", "kafka", "redis", *ONE_SHOT_SERVICES, *APP_SERVICES)
LONG_RUNNING_SERVICES = tuple(s for s in EXPECTED_SERVICES if s not in ONE_SHOT_SERVICES)

APP_SECRETS = (
    "SECRET_KEY",
    "VAULT_KEYS",
    "CARD_FINGERPRINT_KEY",
    "AUDIT_PUBLIC_KEY",
)
SECRET_VARIABLES = (
    *APP_SECRETS,
    "PAYFLOW_DB_PASSWORD",
    "MARIADB_ROOT_PASSWORD",
    "AUDIT_SIGNING_KEY_FILE",
)
# Well-formed but worthless values: `docker compose config` only needs them to be set.
DUMMY_SECRETS = {
    "SECRET_KEY": "x" * 64,
    "VAULT_KEYS": "1:" + "A" * 43 + "=",
    "CARD_FINGERPRINT_KEY": "B" * 43 + "=",
    "AUDIT_PUBLIC_KEY": "payflow.test/audit+fe41b70c+AWIzc27ToPjqAbCsK3e9Qzis0hYhcuVSvVsg31wW9NxJ",
    "AUDIT_SIGNING_KEY_FILE": "/dev/null",
    "PAYFLOW_DB_PASSWORD": "test-db-password",
    "MARIADB_ROOT_PASSWORD": "test-root-password",
}
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


def environment_without_secrets() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}


def test_docker_compose_accepts_the_file_when_the_secrets_are_set(docker_compose):
    result = subprocess.run(
        [*docker_compose, "config", "--quiet"],
        cwd=ROOT,
        env={**environment_without_secrets(), **DUMMY_SECRETS},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_docker_compose_refuses_the_file_when_a_secret_is_missing(docker_compose):
    secrets = {k: v for k, v in DUMMY_SECRETS.items() if k != "VAULT_KEYS"}

    result = subprocess.run(
        [*docker_compose, "config", "--quiet"],
        cwd=ROOT,
        env={**environment_without_secrets(), **secrets},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "set VAULT_KEYS" in result.stderr


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
def test_app_services_wait_for_migrate_and_for_healthy_proxy_kafka_and_redis(name):
    depends_on = service(name)["depends_on"]

    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    for dependency in ("haproxy", "kafka", "redis"):
        assert depends_on[dependency] == {"condition": "service_healthy"}, dependency


def test_migrate_runs_once_against_a_healthy_database_proxy():
    migrate = service("migrate")

    assert command_text("migrate").startswith("python manage.py migrate")
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["haproxy"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("name", [*ONE_SHOT_SERVICES, *APP_SERVICES])
def test_app_services_are_built_from_the_project_dockerfile(name):
    build = service(name)["build"]

    assert build["context"] == ".."
    assert build["dockerfile"] == "docker/Dockerfile"
    assert (DOCKER_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_app_services_share_one_configuration_through_a_yaml_anchor():
    text = COMPOSE_FILE.read_text()

    assert re.search(r"^x-app[\w-]*: &app\b", text, re.MULTILINE)
    for name in (*ONE_SHOT_SERVICES, *APP_SERVICES):
        environment = dict(service(name)["environment"])
        if name == "sequencer":  # the same, plus where its signing key is
            assert environment.pop("AUDIT_SIGNING_KEY_FILE") == "/run/secrets/audit_signing_key"
        assert environment == service("web")["environment"]


def test_only_the_sequencer_is_given_the_audit_signing_key():
    for name in (*ONE_SHOT_SERVICES, *APP_SERVICES):
        environment = service(name)["environment"]
        assert "AUDIT_SIGNING_KEY" not in environment, name
        has_secret = "audit_signing_key" in service(name).get("secrets", [])
        assert has_secret == (name == "sequencer"), name
    assert compose()["secrets"]["audit_signing_key"]["file"].startswith(
        "${AUDIT_SIGNING_KEY_FILE:?"
    )


def test_app_services_reach_the_stack_through_the_environment():
    environment = service("web")["environment"]

    assert environment["DEBUG"] == "False"
    assert environment["DATABASE_URL"] == (
        "mysql://payflow:${PAYFLOW_DB_PASSWORD:?set PAYFLOW_DB_PASSWORD}@haproxy:3306/payflow"
    )
    assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


@pytest.mark.parametrize("name", APP_SECRETS)
def test_every_app_secret_is_required_from_the_environment(name):
    value = service("web")["environment"][name]

    assert value == f"${{{name}:?set {name}}}"


@pytest.mark.parametrize("name", SECRET_VARIABLES)
def test_no_secret_has_a_default_value(name):
    text = COMPOSE_FILE.read_text()
    uses = interpolations(text, name)

    for default_syntax in (f"{name}:-", f"{name}:+", f"${{{name}-", f"${{{name}+"):
        assert default_syntax not in text
    assert uses, f"{name} is never taken from the environment"
    assert all(use.startswith(":?") for use in uses), uses


def test_galera_database_password_comes_only_from_the_environment():
    for node in GALERA_NODES:
        environment = service(node)["environment"]

        assert environment["MARIADB_PASSWORD"] == "${PAYFLOW_DB_PASSWORD:?set PAYFLOW_DB_PASSWORD}"
        assert environment["MARIADB_ROOT_PASSWORD"].startswith("${MARIADB_ROOT_PASSWORD:?")


def test_web_healthcheck_probes_the_readiness_endpoint():
    assert "http://127.0.0.1:8000/readyz" in healthcheck_text("web")


def test_worker_and_beat_run_celery_for_payflow():
    assert command_text("worker").startswith("celery -A payflow worker -l INFO")
    assert command_text("beat").startswith("celery -A payflow beat -l INFO")


def test_only_galera1_bootstraps_a_new_cluster():
    assert "--wsrep-new-cluster" in command_text("galera1")
    assert "--wsrep-new-cluster" not in command_text("galera2")
    assert "--wsrep-new-cluster" not in command_text("galera3")


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


def test_galera_nodes_flush_the_redo_log_at_every_commit():
    assert galera_options()["innodb_flush_log_at_trx_commit"] == "1"


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
    assert '[ "$status" = "4 ON" ]' in script
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
        assert name not in SECRET_VARIABLES, name
        assert not SECRET_NAME_PATTERN.search(name), name


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
