"""Deploying on Galera as compose does, for real: a loopback cluster with production's
``docker/galera/galera.cnf`` (binary log on, flushed at every commit), the accounts made
by ``docker/galera/initdb/10-payflow-accounts.sh``, ``migrate`` and ``audit_grants`` run
as the schema's owner (no SUPER, no CREATE USER), and the application, the sequencer and
the verifier each run as their own least-privileged account.

Reproduced (issue 19): on a node with the binary log, ``migrate`` failed in
``audit.0002`` with ``(1419, 'You do not have the SUPER privilege and binary logging is
enabled')`` for an account with ALL on the schema, which is what the image gives
``MARIADB_USER``: compose started nothing.

The official image's entrypoint is not run here (no Docker engine): its two steps this
depends on are done by the test, named where they are, with the image's own statements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import MySQLdb
import pytest
from django.conf import settings

from audit import tlog
from tests.infra.galera import (
    ACCOUNT_PASSWORD_VARIABLES,
    PRODUCTION_CONFIG,
    GaleraCluster,
    image_first_start,
)

pytestmark = [pytest.mark.galera, pytest.mark.timeout(600)]

ROOT = Path(settings.BASE_DIR)
OWNER = "payflow_migrate"
ACCOUNTS = list(ACCOUNT_PASSWORD_VARIABLES)
SECRETS = {
    "SECRET_KEY": "x7Rk2mPq9Lw4Zt8Nv3Bc6Fh1Jd5Gs0Ya" * 2,
    "VAULT_KEYS": "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    "CARD_FINGERPRINT_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
}

# As the app account: a merchant and its key, a captured payment and a partial refund
# through the API (the whole write path: intent, acquirer, outcome, audit, outbox).
PAYMENT_SCRIPT = """
import json, django
django.setup()
from rest_framework.test import APIClient
from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create
from payflow.platform import context
with context.replaced(context.AuditContext(**context.system_actor("test:deploy"))):
    merchant = merchant_create(name="Deploy drill")
    secret = api_key_create(merchant=merchant).secret
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + secret)
card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
payment = client.post("/v1/payments", {"amount": 2500, "currency": "EUR", "card": card},
                      format="json", secure=True, HTTP_IDEMPOTENCY_KEY="deploy-1")
refund = client.post("/v1/payments/%s/refunds" % payment.json().get("id"), {"amount": 500},
                     format="json", secure=True)
print(payment.content.decode()[:300])
print(json.dumps([payment.status_code, payment.json().get("status"), refund.status_code]))
"""


def _root(node):
    return MySQLdb.connect(host="127.0.0.1", port=node.port, user="root", autocommit=True)


def _passwords(tmp_path: Path) -> dict[str, Path]:
    files = {}
    for account in [OWNER, *ACCOUNTS]:
        path = tmp_path / f"{account}.password"
        # Characters a URL would need percent-encoded: the password never goes in one.
        path.write_text(f"{account}'s p@ss:w/rd#1\n")
        files[account] = path
    return files


def _manage_env(tmp_path: Path, node, database: str, account: str, files, public_key: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DJANGO_"))}
    env.update(
        SECRETS,
        DJANGO_SETTINGS_MODULE="payflow.settings",
        PAYFLOW_ENV_FILE="",
        PAYFLOW_VAR_DIR=str(tmp_path / "var"),
        DEBUG="False",
        AUDIT_PUBLIC_KEY=public_key,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        DATABASE_URL=f"mysql://{account}@127.0.0.1:{node.port}/{database}",
        DATABASE_PASSWORD_FILE=str(files[account]),
        DATABASE_WSREP_SYNC_WAIT="1",
        ALLOWED_HOSTS="testserver",
    )
    return env


def _run(args, env, timeout=300):
    return subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _manage(env, *args):
    return _run([sys.executable, str(ROOT / "manage.py"), *args], env)


@pytest.fixture
def deploy(galera: GaleraCluster, tmp_path):
    database = "pf_deploy"
    node = galera.nodes[0]
    files = _passwords(tmp_path)
    signer = tlog.generate_signer_key("payflow.deploy.test/audit")
    (tmp_path / "signer.key").write_text(signer + "\n")
    public_key = tlog.Signer(signer).verifier_key()
    owner_password = files[OWNER].read_text().removesuffix("\n")
    image_first_start(node, database, OWNER, owner_password, files)

    def env_for(account: str):
        return _manage_env(tmp_path, node, database, account, files, public_key)

    yield node, env_for, tmp_path / "signer.key"
    connection = _root(node)
    cursor = connection.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")
    cursor.execute("DROP DATABASE IF EXISTS `pf_deploy_untrusted`")
    for account in [OWNER, *ACCOUNTS]:
        cursor.execute(f"DROP USER IF EXISTS '{account}'@'%'")
    cursor.execute("SET GLOBAL log_bin_trust_function_creators = ON")
    connection.close()


def test_the_loopback_cluster_runs_production_durability_and_binary_log_settings(galera):
    cursor = galera.nodes[1].connect().cursor()
    cursor.execute(
        "SELECT @@log_bin, @@sync_binlog, @@innodb_flush_log_at_trx_commit, "
        "@@log_bin_trust_function_creators, @@binlog_format"
    )
    assert cursor.fetchone() == (1, 1, 1, 1, "ROW")
    assert "sync_binlog" in PRODUCTION_CONFIG.read_text()


def test_migrate_and_grants_as_the_schema_owner_then_every_service_as_its_own_account(deploy):
    node, env_for, signer_file = deploy
    owner = env_for(OWNER)

    migrated = _manage(owner, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    granted = _manage(owner, "audit_grants", "--apply")
    assert granted.returncode == 0, granted.stderr[-3000:]
    # Again (a later deploy): what the owner granted before is revoked and granted anew.
    again = _manage(owner, "audit_grants", "--apply")
    assert again.returncode == 0, again.stderr[-3000:]

    app = env_for("payflow")
    paid = _run([sys.executable, "-c", PAYMENT_SCRIPT], app)
    assert paid.returncode == 0, paid.stderr[-3000:]
    assert json.loads(paid.stdout.strip().splitlines()[-1]) == [201, "captured", 201], paid.stdout

    sequencer = {**env_for("payflow_sequencer"), "AUDIT_SIGNING_KEY_FILE": str(signer_file)}
    sequenced = _manage(sequencer, "audit_sequencer", "--once", "--no-publish")
    assert sequenced.returncode == 0, sequenced.stderr[-3000:]

    verified = _manage(app, "audit_verify")
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]

    # The application's account cannot change the trail or write the log, whatever the
    # triggers would say: the privilege is not there (1142).
    password = Path(app["DATABASE_PASSWORD_FILE"]).read_text().removesuffix("\n")
    connection = MySQLdb.connect(
        host="127.0.0.1", port=node.port, user="payflow", password=password, database="pf_deploy"
    )
    cursor = connection.cursor()
    for statement in (
        "UPDATE audit_auditentry SET object_id = 'x'",
        "DELETE FROM audit_auditentry",
        "INSERT INTO audit_checkpoint (size) VALUES (1)",
        "CREATE TABLE t (id INT)",
    ):
        with pytest.raises(MySQLdb.OperationalError) as refused:
            cursor.execute(statement)
        assert refused.value.args[0] == 1142, statement
    connection.close()


def test_without_trusting_function_creators_the_owner_cannot_create_the_audit_triggers(
    deploy, galera
):
    """Why galera.cnf sets ``log_bin_trust_function_creators``: the failure of issue 19,
    reproduced on the same cluster with the setting off on the node migrate talks to."""
    node, env_for, _signer_file = deploy
    connection = _root(node)
    cursor = connection.cursor()
    cursor.execute("CREATE DATABASE `pf_deploy_untrusted`")
    cursor.execute(f"GRANT ALL ON `pf_deploy_untrusted`.* TO '{OWNER}'@'%'")
    cursor.execute("SET GLOBAL log_bin_trust_function_creators = OFF")
    try:
        owner = env_for(OWNER)
        owner["DATABASE_URL"] = owner["DATABASE_URL"].replace("pf_deploy", "pf_deploy_untrusted")
        migrated = _manage(owner, "migrate", "--noinput")
    finally:
        cursor.execute("SET GLOBAL log_bin_trust_function_creators = ON")
        connection.close()
    assert migrated.returncode != 0
    assert "1419" in migrated.stderr
    assert "SUPER privilege and binary logging is enabled" in migrated.stderr
