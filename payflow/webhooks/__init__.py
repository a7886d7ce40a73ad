"""Merchant webhooks: endpoints (``endpoints``), their secrets (``secrets``), the
signature (``signing``) and the dispatcher that reads the events from Kafka and delivers
them (``dispatch``). ``docs/webhooks.md`` is the merchant's description."""
