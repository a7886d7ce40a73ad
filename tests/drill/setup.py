"""The drill's merchants and keys, and a settled balance to pay out from: run as the app's
account in the topology (``python -m tests.drill.setup``); prints JSON."""

from __future__ import annotations

import datetime
import json
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payflow.settings")
django.setup()

from django.utils import timezone  # noqa: E402 - after django.setup()

from ledger.services.api_keys import api_key_create  # noqa: E402
from ledger.services.merchants import merchant_create  # noqa: E402
from ledger.services.payments import CardInput, payment_create  # noqa: E402
from ledger.services.settlement import settlement_run  # noqa: E402
from payflow.platform import context  # noqa: E402

MERCHANTS = 2
FLOAT = 50_000_000  # minor units settled per merchant before the drill, for its payouts


def main() -> None:
    keys = []
    with context.replaced(context.AuditContext(**context.system_actor("drill:setup"))):
        for index in range(MERCHANTS):
            merchant = merchant_create(name=f"drill-{index}", settlement_delay_days=0)
            keys.append(api_key_create(merchant=merchant, name="drill").secret)
            card = CardInput(number="4242424242424242", exp_month=12, exp_year=2034, cvc="123")
            payment_create(merchant=merchant, amount=FLOAT, currency="EUR", card=card, capture=True)
        settlement_run(now=timezone.now() + datetime.timedelta(seconds=1))
    print(json.dumps({"keys": keys, "float": FLOAT}))


if __name__ == "__main__":
    main()
