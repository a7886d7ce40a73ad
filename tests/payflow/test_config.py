"""Settings from the environment: refusals with DEBUG=False, the development .env."""

import base64
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import environ
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit import tlog
from payflow import config

GOOD_KEY = base64.b64encode(bytes(range(32))).decode()
GOOD = {
    "SECRET_KEY": "x7Rk2mPq9Lw4Zt8Nv3Bc6Fh1Jd5Gs0Ya" * 2,
    "VAULT_KEYS": f"1:{GOOD_KEY}",
    "CARD_FINGERPRINT_KEY": GOOD_KEY,
    "AUDIT_PUBLIC_KEY": "payflow.test/audit+fe41b70c+AWIzc27ToPjqAbCsK3e9Qzis0hYhcuVSvVsg31wW9NxJ",
}


def load(monkeypatch, debug=False, **values):
    for name in [*GOOD, "AUDIT_SIGNING_KEY", "AUDIT_WITNESS_KEYS"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**GOOD, **values}.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return config.load_secrets(environ.Env(), debug=debug)


def test_good_secrets_load(monkeypatch):
    secrets = load(monkeypatch)
    assert secrets.vault_keys == {1: bytes(range(32))}
    assert secrets.audit_public_key == GOOD["AUDIT_PUBLIC_KEY"]
    assert not hasattr(secrets, "audit_signing_key")  # the sequencer's alone


@pytest.mark.parametrize("name", list(GOOD))
def test_a_missing_secret_stops_start_up_naming_the_variable(monkeypatch, name):
    with pytest.raises(ImproperlyConfigured, match=f"^{name} is not set"):
        load(monkeypatch, **{name: None})


@pytest.mark.parametrize(
    "weak", ["short", "django-insecure-" + "a1b2c3d4e5" * 6, "a" * 80, "change-me" * 8]
)
def test_a_weak_secret_key_stops_start_up_when_debug_is_off(monkeypatch, weak):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is too weak"):
        load(monkeypatch, SECRET_KEY=weak)


def test_debug_accepts_a_weak_secret_key_for_local_work(monkeypatch):
    assert load(monkeypatch, debug=True, SECRET_KEY="dev").secret_key == "dev"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not-a-keyring", "VAULT_KEYS must look like"),
        ("1:!!!", "not valid base64"),
        ("1:" + base64.b64encode(b"short").decode(), "must decode to 32 bytes"),
        (f"1:{GOOD_KEY},1:{GOOD_KEY}", "version 1 twice"),
        ("1:" + base64.b64encode(bytes(32)).decode(), "not a random key"),
    ],
)
def test_a_malformed_vault_keyring_is_refused_with_the_reason(monkeypatch, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load(monkeypatch, VAULT_KEYS=value)


@pytest.mark.parametrize(
    "value",
    [
        "not a key",
        "payflow.test/audit+00000000+AWIzc27ToPjqAbCsK3e9Qzis0hYhcuVSvVsg31wW9NxJ",  # wrong id
        "PRIVATE+KEY+payflow.test/audit+fe41b70c+ATB6Xy3s9OTpfv8TsixXGBBFFnuj+f/yGAViFa/fS3ee",
    ],
)
def test_an_audit_public_key_that_is_not_a_verifier_key_is_refused(monkeypatch, value):
    with pytest.raises(ImproperlyConfigured, match="AUDIT_PUBLIC_KEY is not a note verifier key"):
        load(monkeypatch, AUDIT_PUBLIC_KEY=value)


def test_the_development_env_has_fresh_valid_secrets_and_is_never_overwritten(
    tmp_path, monkeypatch
):
    path = tmp_path / ".env"
    assert config.write_development_env(path) is True
    first = path.read_text()
    assert config.write_development_env(path) is False
    assert path.read_text() == first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    values = dict(line.split("=", 1) for line in first.splitlines() if "=" in line)
    assert values["DEBUG"] == "True"
    # the generated secrets would pass even the production checks
    load(monkeypatch, **{name: values[name] for name in GOOD})
    # the log's signer key is beside it, for the sequencer alone, and matches the public key
    signer = tlog.Signer((tmp_path / "audit-signing.key").read_text())
    assert signer.verifier_key() == values["AUDIT_PUBLIC_KEY"]
    assert "PRIVATE" not in first
    assert oct((tmp_path / "audit-signing.key").stat().st_mode & 0o777) == "0o600"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = elsewhere / ".env"
    config.write_development_env(other)
    assert other.read_text() != first


def test_only_sqlite_and_mariadb_urls_are_accepted():
    with pytest.raises(ImproperlyConfigured, match="sqlite:// or mysql://"):
        config.database_settings("postgres://u@h/db", conn_max_age=0, wsrep_sync_wait=None)


def test_an_empty_database_url_is_refused_with_a_sentence_not_a_traceback(tmp_path):
    # reproduced: DATABASE_URL= (set, empty) failed with KeyError: 'ENGINE'
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL is empty or not a database"):
        config.database_settings("", conn_max_age=0, wsrep_sync_wait=None)
    env = _clean_env(tmp_path)
    env.update(GOOD, PAYFLOW_ENV_FILE="", DATABASE_URL="")
    result = _manage("check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "configuration error: DATABASE_URL is empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_mariadb_settings_ask_for_utf8mb4_read_committed_strict_mode_and_sync_wait():
    result = config.database_settings(
        "mysql://app:pw@db:3306/payflow", conn_max_age=60, wsrep_sync_wait=1
    )
    assert result["OPTIONS"]["charset"] == "utf8mb4"
    assert result["OPTIONS"]["isolation_level"] == "read committed"
    assert "STRICT_TRANS_TABLES" in result["OPTIONS"]["init_command"]
    assert "wsrep_sync_wait=1" in result["OPTIONS"]["init_command"]
    assert result["CONN_MAX_AGE"] == 60


def _manage(*args, env, cwd):
    return subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in GOOD and k != "DJANGO_SETTINGS_MODULE"}
    env.pop("DATABASE_URL", None)
    env.update(PAYFLOW_VAR_DIR=str(tmp_path / "var"), DEBUG="False")
    return env


def test_production_start_up_without_secrets_fails_naming_the_variable(tmp_path):
    env = _clean_env(tmp_path)
    env["PAYFLOW_ENV_FILE"] = ""
    result = _manage("check", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "configuration error: SECRET_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr  # a sentence, exit 2
    assert result.returncode == 2


def test_the_embedded_default_runs_on_sqlite_in_wal_mode(tmp_path):
    # the development .env plus no DATABASE_URL: the embedded SQLite default
    env_file = tmp_path / ".env"
    config.write_development_env(env_file)
    env = _clean_env(tmp_path)
    env.pop("DEBUG")
    env["PAYFLOW_ENV_FILE"] = str(env_file)
    result = _manage("migrate", "--noinput", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    database = tmp_path / "var" / "payflow.sqlite3"
    assert database.exists()
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    seeded = _manage("seed_demo", env=env, cwd=tmp_path)
    again = _manage("seed_demo", env=env, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    assert again.returncode == 0, again.stderr
    # running the demo seed twice prints the same credentials and duplicates nothing
    assert seeded.stdout == again.stdout
    with sqlite3.connect(database) as connection:
        users = connection.execute("SELECT username FROM auth_user ORDER BY username").fetchall()
    assert users == [("admin",), ("auditor",), ("operator",)]
    with sqlite3.connect(database) as connection:
        merchants = connection.execute("SELECT name FROM ledger_merchant").fetchall()
        keys = connection.execute("SELECT COUNT(*) FROM ledger_apikey").fetchone()
    assert (merchants, keys) == ([("Demo Shop",)], (1,))
    assert "merchant API key  sk_test_" in seeded.stdout
    # the audit table's triggers exist on SQLite too: raw UPDATE and DELETE fail
    with sqlite3.connect(database) as connection:
        audited = connection.execute("SELECT COUNT(*) FROM audit_auditentry").fetchone()[0]
        assert audited >= 2  # the demo merchant and its API key, recorded
        for statement in (
            "UPDATE audit_auditentry SET request_id = 'x'",
            "DELETE FROM audit_auditentry",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="audit"):
                connection.execute(statement)
        assert connection.execute("SELECT COUNT(*) FROM audit_auditentry").fetchone()[0] == audited
        actors = connection.execute("SELECT DISTINCT actor_id FROM audit_auditentry").fetchall()
    assert actors == [("command:seed_demo",)]


@pytest.mark.parametrize(
    ("timeout", "claim", "recovery", "culprit"),
    [
        (10.0, 3, 60, "IDEMPOTENCY_LOCK_SECONDS (3) must be at least 30, 3 times"),
        (10.0, 60, 29, "PAYMENT_RECOVERY_AFTER_SECONDS (29) must be at least 30, 3 times"),
        (0.0, 60, 60, "ACQUIRER_TIMEOUT_SECONDS must be a positive number"),
    ],
)
def test_timings_that_let_a_live_request_lose_its_claim_are_refused(
    timeout, claim, recovery, culprit
):
    # The repro of issue 13 item 3 ran IDEMPOTENCY_LOCK_SECONDS=3 against an acquirer
    # without a timeout: a claim could expire while its request still waited.
    with pytest.raises(ImproperlyConfigured, match=re.escape(culprit)):
        config.acquirer_timings(timeout=timeout, claim=claim, recovery_after=recovery)
    config.acquirer_timings(timeout=1.0, claim=3, recovery_after=3)


def test_start_up_with_a_claim_shorter_than_the_acquirer_calls_fails_with_a_sentence(tmp_path):
    env = _clean_env(tmp_path)
    env.update(GOOD, PAYFLOW_ENV_FILE="", IDEMPOTENCY_LOCK_SECONDS="3")
    result = _manage("check", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "IDEMPOTENCY_LOCK_SECONDS (3) must be at least 30, 3 times" in result.stderr


def test_check_deploy_fails_while_fault_injection_is_on(tmp_path):
    env = _clean_env(tmp_path)
    env.update(GOOD, PAYFLOW_ENV_FILE="", FAULT_INJECTION="True")
    result = _manage("check", "--deploy", "--fail-level", "ERROR", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "payflow.E001" in result.stderr


def test_check_deploy_with_production_settings_prints_no_warning(tmp_path):
    # Reproduced before: security.W004 (no HSTS) and security.W008 (no SSL redirect).
    env = _clean_env(tmp_path)
    env.update(GOOD, PAYFLOW_ENV_FILE="")
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # the suite's own (tests/settings.py)
    result = _manage("check", "--deploy", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_behind_the_tls_proxy_plain_http_is_redirected_and_https_gets_hsts(settings):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 365 * 86400
    plain = Client().get("/admin/login/")
    assert (plain.status_code, plain["Location"]) == (301, "https://testserver/admin/login/")
    secure = Client().get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    # the probes answer over plain HTTP from inside the host
    assert Client().get("/healthz").status_code == 200


def test_an_operator_session_lasts_eight_hours_by_default():
    assert settings.SESSION_COOKIE_AGE == 8 * 3600


# --- secrets from files (NAME_FILE), as Docker secrets deliver them ----------------------
def test_a_variable_can_come_from_a_file_without_its_final_line_break(tmp_path):
    (tmp_path / "secret_key").write_text(GOOD["SECRET_KEY"] + "\n")
    environ_ = config.SecretFileEnviron({"SECRET_KEY_FILE": str(tmp_path / "secret_key")})
    env = environ.Env()
    env.ENVIRON = environ_
    assert env.str("SECRET_KEY") == GOOD["SECRET_KEY"]
    assert "SECRET_KEY" in environ_
    assert env.str("VAULT_KEYS", default="unset") == "unset"


def test_a_variable_set_both_directly_and_from_a_file_is_refused(tmp_path):
    (tmp_path / "pw").write_text("from-file")
    environ_ = config.SecretFileEnviron({"DATABASE_PASSWORD": "x", "DATABASE_PASSWORD_FILE": "pw"})
    with pytest.raises(ImproperlyConfigured, match="both DATABASE_PASSWORD and DATABASE_PASS"):
        environ_["DATABASE_PASSWORD"]


def test_an_unreadable_secret_file_stops_start_up_with_a_sentence(tmp_path):
    env = _clean_env(tmp_path)
    env.update(GOOD, PAYFLOW_ENV_FILE="")
    del env["VAULT_KEYS"]
    env["VAULT_KEYS_FILE"] = str(tmp_path / "missing")
    result = _manage("check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert f"configuration error: VAULT_KEYS_FILE={tmp_path / 'missing'} cannot" in result.stderr
    assert "cannot be read: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_start_up_takes_every_secret_and_the_database_password_from_files(tmp_path):
    env = _clean_env(tmp_path)
    env["PAYFLOW_ENV_FILE"] = ""
    for name, value in GOOD.items():
        (tmp_path / name.lower()).write_text(value + "\n")
        env[f"{name}_FILE"] = str(tmp_path / name.lower())
    (tmp_path / "db_password").write_text("p@ss:w/rd\n")
    env.update(
        DATABASE_URL="mysql://payflow@db.internal:3306/payflow",
        DATABASE_PASSWORD_FILE=str(tmp_path / "db_password"),
    )
    script = (
        "import django; django.setup(); from django.conf import settings as s; "
        "d = s.DATABASES['default']; print(d['USER'], d['PASSWORD'], d['HOST'], "
        f"s.VAULT_KEYS[1] == bytes(range(32)), s.SECRET_KEY == {GOOD['SECRET_KEY']!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "DJANGO_SETTINGS_MODULE": "payflow.settings"},
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["payflow", "p@ss:w/rd", "db.internal", "True", "True"]


def test_deployment_secrets_are_written_once_readable_by_the_containers_and_never_replaced(
    tmp_path,
):
    directory = tmp_path / "secrets"
    result = subprocess.run(
        [sys.executable, "-m", "payflow.config", "--deployment-secrets", str(directory),
         "--log-origin", "payflow.example.com/audit"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in directory.iterdir()) == sorted(config.DEPLOYMENT_SECRETS)
    assert directory.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in directory.iterdir()} == {0o444}
    signer = tlog.Signer((directory / "audit_signing_key").read_text().strip())
    assert signer.verifier_key() == (directory / "audit_public_key").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}\n", (directory / "db_app_password").read_text())
    before = {p.name: p.read_text() for p in directory.iterdir()}
    (directory / "metrics_token").chmod(0o644)
    (directory / "metrics_token").unlink()
    assert config.write_deployment_secrets(directory, "payflow.example.com/audit") == [
        "metrics_token"
    ]
    after = {p.name: p.read_text() for p in directory.iterdir()}
    assert {k: v for k, v in after.items() if k != "metrics_token"} == {
        k: v for k, v in before.items() if k != "metrics_token"
    }
