"""The platform layer: what every app builds on, importing no app.

``db`` (transactions, retries, lock order, UUIDv7), ``context`` (who is acting), ``guards``
(write guards of audited models), ``kafka`` and ``kafka_mock`` (the broker), ``cardnumbers``
(Luhn and PAN detection), ``faults`` (crash-test injection points). The import-linter
contract in ``pyproject.toml`` keeps it at the bottom.
"""
