"""The merchant REST API (``/v1``): thin views over the ledger services."""
