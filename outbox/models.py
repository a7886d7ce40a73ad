"""Models of the outbox app (see DESIGN.md)."""
