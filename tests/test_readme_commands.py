"""The README's command examples, run as a reader runs them (issue #16: `audit_legal_hold
place … --by counsel` from the README crashed with MissingActor).

Every command line of the README's ``sh`` blocks that calls ``manage.py`` or
``tools/verify_evidence.py`` is run here, as written, in a shell, in a directory laid out
like a checkout (``.venv``, ``manage.py``, ``tools``; the files a reader would have made
beside them: keys, a bundle, a saved checkpoint). The only changes are the ones a reader
makes: placeholders in angle brackets (``pay_<id>``, ``<hold id>``, ``tok_…``) become real
ids, example hosts (``https://payflow.example.com``) the test server, the database of the
MariaDB set-up block a fresh name, and the 50,000-entry segment name the segment this
test archived. A test also fails when the README gains a command it does not know: the
README and this test change together.

Not run here: ``make run`` (long-running; its embedded defaults are tested on their own) and
``make test`` (CI runs it), and the ``curl`` examples of the API
section (``tests/test_readme_api.py`` runs them against a live server).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from audit import tlog
from audit.archive import audit_archive
from audit.evidence import evidence_export
from audit.models import ArchiveSegment, Checkpoint, Cosignature, LegalHold
from ledger import ids
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db(transaction=True)

#: README command lines (their first words) this test runs, and those it leaves, with why.
LEFT = {
    "make run": "the whole stack, long-running: its parts' embedded defaults are tested "
    "(tests/outbox/test_embedded_sqlite.py, tests/payflow/test_embedded_broker_folders.py)",
    "make test": "the suite itself: CI runs it",
    "curl": "the API examples: run by tests/test_readme_api.py",
    "KEY=": "the API examples: run by tests/test_readme_api.py",
    "H=": "the API examples: run by tests/test_readme_api.py",
    "L=": "the API examples: run by tests/test_readme_api.py",
    "TOKEN=": "the API examples: run by tests/test_readme_api.py",
    "PAY=": "the API examples: run by tests/test_readme_api.py",
}


def readme_commands() -> list[str]:
    """Each command of the README's ``sh`` blocks, continuation lines joined, comments cut."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines: list[str] = []
        for line in joined.splitlines():  # a quoted string may go on over lines
            if lines and _open_quote(lines[-1]):
                lines[-1] += "\n" + line
            else:
                lines.append(line)
        for line in lines:
            line = re.sub(r"\s+#\s.*$", "", line.strip())  # a comment after the command
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _open_quote(text: str) -> bool:
    """Whether ``text`` ends inside a double-quoted string (escaped quotes aside)."""
    return len(re.findall(r'(?<!\\)"', text)) % 2 == 1


def left_out(command: str) -> bool:
    return any(command.startswith(start) for start in LEFT)


@pytest.fixture
def merchant(db):
    return merchant_create(name="Boulangerie Martin")


@pytest.fixture
def checkout(tmp_path):
    """A directory laid out like a checkout, where the README's commands run."""
    home = tmp_path / "checkout"
    home.mkdir()
    for name in (".venv", "manage.py", "tools", "payflow", "ledger", "audit", "outbox"):
        (home / name).symlink_to(ROOT / name)
    (home / "var").mkdir()
    return home


@pytest.fixture
def shell(checkout, live_server):
    database = settings.DATABASES["default"]
    url = (
        f"mysql://{database['USER']}@{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 3306}"
        f"/{database['NAME']}"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PAYFLOW_ENV_FILE": "",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AUDIT_ARCHIVE_DIR": str(checkout / "var" / "audit-archive"),
    }

    def run(command: str, expect: int = 0, timeout: int = 120) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == expect, (command, done.returncode, output)
        assert "Traceback" not in output, (command, output)
        return done.stdout

    run.env = env  # type: ignore[attr-defined]
    return run


def test_every_readme_command_is_known_to_this_test():
    known = set(RUNS) | set(LEFT)
    unknown = [c for c in readme_commands() if not any(c.startswith(k) for k in known)]
    assert unknown == [], "a README command this test does not run (add it to RUNS or LEFT)"


#: The command starts this test knows to run (each is run in the test below).
RUNS = (
    ".venv/bin/python manage.py audit_verify",
    ".venv/bin/python manage.py audit_keygen",
    ".venv/bin/python manage.py audit_witness",
    ".venv/bin/python manage.py audit_grants",
    "python tools/verify_evidence.py",
    ".venv/bin/python manage.py audit_archive",
    ".venv/bin/python manage.py audit_retention_purge",
    ".venv/bin/python manage.py audit_legal_hold",
    ".venv/bin/python manage.py audit_erase",
    "mariadb -uroot -e",
    "export DATABASE_URL=",
    ".venv/bin/python manage.py migrate",
)


def test_the_readme_commands_run_as_written(
    checkout, shell, live_server, merchant, django_user_model, settings
):
    commands = [c for c in readme_commands() if not left_out(c)]
    ran: list[str] = []
    payment = pay(merchant, amount=5000)
    refund_create(payment=payment, amount=700)
    olivia = django_user_model.objects.create_user("olivia", password="pw-olivia-1234")
    olivia.groups.add(Group.objects.get_or_create(name="operator")[0])
    sequence()
    first = Checkpoint.objects.get()
    (checkout / "audit-log.vkey").write_text(settings.AUDIT_PUBLIC_KEY + "\n")
    (checkout / "last-seen.note").write_text(first.note)

    def take(start: str) -> list[str]:
        found = [c for c in commands if c.startswith(start)]
        assert found, f"the README no longer has {start!r}"
        ran.extend(found)
        return found

    # verification of the log, in order, with reconciliation
    for command in take(".venv/bin/python manage.py audit_verify"):
        assert "audit log OK" in shell(command)

    # key pairs, the way the README makes them
    keys = take(".venv/bin/python manage.py audit_keygen")
    assert "signer key (secret):  PRIVATE+KEY+payflow.example.com/audit+" in shell(keys[0])
    witness_out = shell(keys[1])
    signer = witness_out.split("signer key (secret):  ", 1)[1].split("\n", 1)[0]
    verifier = witness_out.split("verifier key (public): ", 1)[1].split("\n", 1)[0]
    (checkout / "witness.key").write_text(signer + "\n")
    settings.AUDIT_WITNESS_KEYS = [verifier]  # the log accepts this witness's cosignatures

    # the witness runs until stopped: it accepts the log, cosigns and submits
    (witness,) = take(".venv/bin/python manage.py audit_witness")
    witness = witness.replace(
        "https://payflow.example.com/audit/log/", f"{live_server.url}/audit/log/"
    )
    process = subprocess.Popen(
        ["bash", "-c", witness], cwd=checkout, env=shell.env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not Cosignature.objects.exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the witness cosigned nothing"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert json.loads((checkout / "witness.json").read_text())["size"] == first.size

    for command in take(".venv/bin/python manage.py audit_grants"):
        assert "GRANT" in shell(command)

    # evidence, checked offline: one bundle, then with a saved checkpoint and two witnesses
    refund_create(payment=payment.__class__.objects.get(pk=payment.pk), amount=300)
    sequence()
    latest = Checkpoint.objects.order_by("-size").first()
    witnesses = []
    for name in ("w1", "w2"):
        key = tlog.generate_witness_key(f"auditor.example.com/{name}")
        witnesses.append(tlog.WitnessSigner(key))
        (checkout / f"{name}.vkey").write_text(witnesses[-1].verifier_key() + "\n")
    settings.AUDIT_WITNESS_KEYS = [w.verifier_key() for w in witnesses]
    for witness_signer in witnesses:
        cosigned = tlog.add_cosignature(latest.note, witness_signer, int(time.time()))
        answer = Client().post("/audit/log/cosignature", cosigned, content_type="text/plain")
        assert answer.status_code == 200
    bundle = evidence_export(
        object_type="ledger.transaction",
        object_id=str(payment.pk),
        trusted_size=first.size,
        trusted_root=bytes.fromhex(first.root),
    )
    (checkout / "bundle.json").write_text(json.dumps(bundle))
    offline = [c for c in take("python tools/verify_evidence.py") if "--segment" not in c]
    assert shell(offline[0]).startswith("VERIFIED")
    report = json.loads(shell(offline[1]))
    assert report["verified"] is True

    # archiving, retention, a legal hold by the ids people know, a segment checked offline
    settings.AUDIT_SEGMENT_MAX_ROWS = 10
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(checkout / "var" / "audit-archive")},
        },
    }
    archive, purge = take(".venv/bin/python manage.py audit_archive") + take(
        ".venv/bin/python manage.py audit_retention_purge"
    )
    shell(archive)
    shell(purge)
    holds = take(".venv/bin/python manage.py audit_legal_hold")
    place = holds[0].replace("pay_<id>", ids.encode("payment", payment.pk))
    assert f"placed on ledger.transaction {payment.pk}" in shell(place)
    hold = LegalHold.objects.get()
    assert hold.placed_by == "counsel"
    assert str(payment.pk) in shell(holds[1])
    shell(f".venv/bin/python manage.py audit_legal_hold release {hold.id} --by counsel")
    audit_archive(now=timezone.now() + datetime.timedelta(days=400))
    segment = ArchiveSegment.objects.order_by("first_index").first()
    (segment_command,) = take("python tools/verify_evidence.py --segment")
    written = "var/audit-archive/log/000000000000000-000000000049999.jsonl.gz"
    assert written in segment_command
    segment_command = (
        segment_command.replace(written, f"var/audit-archive/{segment.storage_path}")
        .replace("<sha256 from the segment record>", segment.file_digest)
        .replace("--last-index 49999", f"--last-index {segment.last_index}")
    )
    assert shell(segment_command).startswith("VERIFIED segment file")

    # erasure of a cardholder (by the card's tok_ id) and of an admin user
    card, user = take(".venv/bin/python manage.py audit_erase")
    token = ids.encode("token", payment.card_token_id)
    assert "its key is destroyed" in shell(card.replace("tok_…", token))
    assert "its key is destroyed" in shell(user)

    # a fresh MariaDB database, as the set-up section makes it (its own name here)
    name = f"pf_readme_{uuid.uuid4().hex[:8]}"
    create, export, migrate = (
        take("mariadb -uroot -e")[0],
        take("export DATABASE_URL=")[0],
        take(".venv/bin/python manage.py migrate")[0],
    )
    create = create.replace("CREATE DATABASE payflow", f"CREATE DATABASE {name}")
    export = export.replace(":3306/payflow", f":3306/{name}")
    try:
        shell(f"{create} && {export} && {migrate}", timeout=600)
    finally:
        subprocess.run(["mariadb", "-uroot", "-e", f"DROP DATABASE IF EXISTS {name}"], check=False)

    assert sorted(set(ran)) == sorted(set(commands))  # every one was run
