"""Every write of the ledger. Views, tasks and the admin call these; nothing else writes.

Each service owns its transaction (``payflow.platform.db.atomic``), sends ``ledger_changed`` for
every insert and state change from inside it, and never calls the outside world inside it.
"""
