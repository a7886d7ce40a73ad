"""Every app service of docker/compose.yaml, started as compose would start it, as far as
this machine can: its environment (compose's interpolation resolved, every
``/run/secrets/<name>`` mapped to a file written by ``python -m payflow.config
--deployment-secrets``) loads the production settings, and its command names a real
program of the project. No Docker engine runs here; what is checked is what the container
would see, not the container.

Reproduced (issue 19): behind the TLS proxy the admin's POSTs failed CSRF
(``CSRF_TRUSTED_ORIGINS`` not passed), the Django cache was per process (``CACHE_URL``
unset), ``PROMETHEUS_MULTIPROC_DIR`` unset, the archive on each container's own disk, and
every secret a plain environment variable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from payflow import config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
HOSTNAME = "payflow.example.com"
APP_SERVICES = ("migrate", "topics", "web", "worker", "archiver", "beat", "relay", "sequencer")
APP_SERVICES += ("webhooks",)

pytestmark = pytest.mark.timeout(300)


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def interpolate(value: str, variables: dict[str, str]) -> str:
    """compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$``."""

    def replace(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        value = variables.get(name, "")
        if operator == ":-":
            return value or argument
        if operator == ":?" and not value:
            raise AssertionError(f"compose would refuse to start: {argument}")
        return value

    text = str(value).replace("$$", "\0")
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-|:\?)?([^}]*)\}", replace, text)
    return text.replace("\0", "$")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("deployment") / "secrets"
    config.write_deployment_secrets(directory, "payflow.example.com/audit")
    return directory


def container_environment(name: str, secrets_dir: Path, var_dir: Path) -> dict[str, str]:
    definition = compose()["services"][name]
    mounted = set(definition.get("secrets", []))
    # tmpfs mounts: a fresh directory each, as each container start gets.
    tmpfs = {
        mount.split(":")[0]: var_dir / "tmpfs" / str(i)
        for i, mount in enumerate(definition.get("tmpfs", []))
    }
    for directory in tmpfs.values():
        directory.mkdir(parents=True)
    variables = {"PAYFLOW_HOSTNAME": HOSTNAME}
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    # What the image's ENV sets (docker/Dockerfile), with this machine's paths.
    env.update(PAYFLOW_ENV_FILE="", PAYFLOW_VAR_DIR=str(var_dir), PYTHONDONTWRITEBYTECODE="1")
    for variable, value in dict(definition["environment"]).items():
        text = interpolate(value, variables)
        if text.startswith("/run/secrets/"):
            secret = text.removeprefix("/run/secrets/")
            assert secret in mounted, f"{name}: {variable} names {secret}, not mounted"
            text = str(secrets_dir / secret)
        env[variable] = str(tmpfs.get(text, text))
    return env


# As the image's healthchecks do: DJANGO_SETTINGS_MODULE is the programs' own default
# (manage.py, payflow.wsgi, payflow.celery), not in the environment.
SETUP = 'import os; os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings"); '
SETTINGS_PROBE = (
    SETUP
    + """
import json, django
django.setup()
from django.conf import settings as s
d = s.DATABASES["default"]
archive = s.STORAGES["audit_archive"]
print(json.dumps({
    "user": d["USER"], "password": d["PASSWORD"], "host": d["HOST"],
    "sync_wait": "wsrep_sync_wait=1" in d["OPTIONS"]["init_command"],
    "cache": s.CACHES["default"]["BACKEND"], "cache_location": s.CACHES["default"]["LOCATION"],
    "csrf": s.CSRF_TRUSTED_ORIGINS, "allowed": s.ALLOWED_HOSTS,
    "proxy_header": list(getattr(s, "SECURE_PROXY_SSL_HEADER", None) or []),
    "archive": archive["BACKEND"], "archive_key": archive["OPTIONS"]["access_key"],
    "archive_secret": archive["OPTIONS"]["secret_key"],
    "secret_key": s.SECRET_KEY, "public_key": s.AUDIT_PUBLIC_KEY,
    "metrics_token": s.METRICS_TOKEN, "kafka": s.KAFKA_BOOTSTRAP_SERVERS,
    "archiver_queue": s.AUDIT_ARCHIVER_QUEUE,
}))
"""
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def secret(secrets_dir: Path, name: str) -> str:
    return (secrets_dir / name).read_text().removesuffix("\n")


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_app_service_loads_production_settings_from_its_compose_environment(
    name, secrets_dir, tmp_path
):
    env = container_environment(name, secrets_dir, tmp_path)
    result = run([sys.executable, "-c", SETTINGS_PROBE], env)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout)

    account = {"migrate": "migrate", "archiver": "archiver", "sequencer": "sequencer"}
    role = account.get(name, "app")
    assert loaded["user"] == "payflow" if role == "app" else f"payflow_{role}"
    assert loaded["password"] == secret(secrets_dir, f"db_{role}_password")
    assert loaded["host"] == "haproxy"
    assert loaded["sync_wait"] is True
    assert loaded["cache"] == "django.core.cache.backends.redis.RedisCache"
    assert loaded["cache_location"].startswith("redis://redis:6379/")
    assert loaded["csrf"] == [f"https://{HOSTNAME}"]
    assert HOSTNAME in loaded["allowed"]
    assert loaded["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert loaded["archive"] == "storages.backends.s3.S3Storage"
    s3_role = "archiver" if name == "archiver" else "reader"
    assert loaded["archive_key"] == f"payflow-{s3_role}"
    assert loaded["archive_secret"] == secret(secrets_dir, f"s3_{s3_role}_secret")
    assert loaded["secret_key"] == secret(secrets_dir, "secret_key")
    assert loaded["public_key"] == secret(secrets_dir, "audit_public_key")
    assert loaded["metrics_token"] == secret(secrets_dir, "metrics_token")
    assert loaded["kafka"] == "kafka1:9092,kafka2:9092,kafka3:9092"
    assert loaded["archiver_queue"] == "audit-archive"


CELERY_PROBE = (
    SETUP
    + """
import sys, django
django.setup()
from payflow.celery import app
app.loader.import_default_modules()
routes = {name: app.amqp.router.route({}, name)["queue"].name for name in app.tasks
          if not name.startswith("celery.")}
queue = sys.argv[1]
if queue == "audit-archive":
    archive_jobs = {n for n, q in routes.items() if q == queue}
    assert archive_jobs == {"audit.archive", "audit.retention_purge"}, routes
elif queue:
    assert queue == app.conf.task_default_queue
    assert routes["ledger.recover_in_flight"] == queue, routes
assert "audit.archive" in routes
"""
)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_app_service_command_is_a_program_of_the_project(name, secrets_dir, tmp_path):
    definition = compose()["services"][name]
    command = definition.get("command")
    if command is None:  # the image's CMD: gunicorn (tests/docker/test_compose.py)
        command = ["gunicorn", "payflow.wsgi:application", "-c", "python:payflow.gunicorn_conf"]
    env = container_environment(name, secrets_dir, tmp_path)
    if command[:2] == ["sh", "-c"]:
        programs = [part.split() for part in command[2].split("&&")]
    else:
        programs = [command]
    for program in programs:
        if program[:2] == ["python", "manage.py"]:
            # The command exists, and its arguments parse (--help after them stops there).
            checked = run([sys.executable, "manage.py", "help", program[2]], env)
        elif program[0] == "celery":
            # The app loads its tasks; a worker's -Q queue is where its tasks are sent: the
            # archive jobs to the archiver's, every other job to the default queue.
            queues = program[program.index("-Q") + 1] if "-Q" in program else ""
            checked = run([sys.executable, "-c", CELERY_PROBE, queues], env)
        elif program[0] == "gunicorn":
            checked = run([sys.executable, "-c", "import payflow.wsgi, payflow.gunicorn_conf"], env)
        else:
            raise AssertionError(f"{name}: unknown program {program}")
        assert checked.returncode == 0, (name, program, checked.stderr[-2000:])


def test_the_sequencer_alone_can_open_the_signing_key_and_it_matches_the_public_key(
    secrets_dir, tmp_path
):
    probe = SETUP + (
        "import django; django.setup(); "
        "from audit.sequencer import signing_key_from_environment as k; print(k().name)"
    )
    signed = run(
        [sys.executable, "-c", probe], container_environment("sequencer", secrets_dir, tmp_path)
    )
    assert signed.returncode == 0, signed.stderr[-2000:]
    assert signed.stdout.strip() == "payflow.example.com/audit"
    refused = run(
        [sys.executable, "-c", probe], container_environment("web", secrets_dir, tmp_path)
    )
    assert refused.returncode != 0
    assert "needs its signing key" in refused.stderr


CSRF_PROBE = (
    SETUP
    + """
import django
django.setup()
from django.middleware.csrf import CsrfViewMiddleware, get_token
from django.test import RequestFactory
factory = RequestFactory()
token = get_token(factory.get("/"))
def post(origin, host):
    request = factory.post(
        "/admin/login/", {"csrfmiddlewaretoken": token}, HTTP_HOST=host,
        HTTP_ORIGIN=origin, HTTP_X_FORWARDED_PROTO="https",
    )
    request.COOKIES["csrftoken"] = token
    middleware = CsrfViewMiddleware(lambda r: None)
    answer = middleware.process_view(request, lambda r: None, (), {})
    return "accepted" if answer is None else str(answer.status_code)
print(post("https://payflow.example.com", "payflow.example.com"),
      post("https://payflow.example.com", "127.0.0.1:8000"),
      post("https://evil.example", "payflow.example.com"))
"""
)


def test_an_admin_post_through_the_tls_proxy_passes_csrf_and_a_foreign_origin_does_not(
    secrets_dir, tmp_path
):
    """Through a proxy that keeps the Host header, and one that sends its own (web's
    address): both are the deployment's origin; another site's form is refused."""
    result = run(
        [sys.executable, "-c", CSRF_PROBE], container_environment("web", secrets_dir, tmp_path)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["accepted", "accepted", "403"]
