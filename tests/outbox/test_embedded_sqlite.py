"""`make run`'s database is SQLite: the demo data and the relay must work on it too.

The rest of the suite runs on MariaDB; the relay marks events published with SQL that has
a MariaDB form (UPDATE ... JOIN) and a SQLite form (UPDATE ... FROM). This runs the
embedded-default path in a separate process, against a SQLite file and the test broker:
migrate, the demo seed (real payments through the services), then the relay.
"""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PAY = """
from ledger.models import Merchant
from ledger.services.payments import CardInput, payment_create
from ledger.services.refunds import refund_create
from payflow.platform import context
with context.bind(**context.system_actor("command:test")):
    merchant = Merchant.objects.get(name="Demo Shop")
    for amount in (1000, 2500, 4000):
        card = CardInput(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
        payment = payment_create(merchant=merchant, amount=amount, currency="EUR", card=card,
                                 capture=True)
    refund_create(payment=payment, amount=1000)
"""

RELAY = """
from outbox import relay
from outbox.models import OutboxEvent
published = 0
while True:
    done = sum(report.published for report in relay.relay_all(time_budget=30))
    published += done
    if not done:
        break
print(json.dumps({"published": published}))
"""


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_demo_payments_are_relayed_from_sqlite(kafka_broker, tmp_path):
    database = tmp_path / "payflow.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "KAFKA_TOPIC_PREFIX": f"sqlite{os.getpid()}.",
        "PAYFLOW_VAR_DIR": str(tmp_path / "var"),
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "seed_demo")
    manage(env, "shell", "-c", PAY)
    pending = sqlite3.connect(database).execute(
        "SELECT COUNT(*) FROM outbox_outboxevent WHERE status = 'pending'"
    )
    assert pending.fetchone()[0] > 0

    out = manage(env, "shell", "-c", "import json\n" + RELAY)

    published = json.loads(out.strip().splitlines()[-1])["published"]
    rows = (
        sqlite3.connect(database)
        .execute(
            "SELECT status, attempts, published_at, topic, kafka_partition, kafka_offset "
            "FROM outbox_outboxevent"
        )
        .fetchall()
    )
    assert published == len(rows) > 0
    assert {row[0] for row in rows} == {"published"}
    assert {row[1] for row in rows} == {1}
    assert all(row[2] and row[4] is not None and row[5] is not None for row in rows)
    positions = [(row[3], row[4], row[5]) for row in rows]
    assert len(set(positions)) == len(positions)  # one Kafka offset per event
