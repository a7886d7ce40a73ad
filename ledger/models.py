"""Models of the ledger app (see DESIGN.md)."""
