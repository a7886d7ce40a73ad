"""Models of the audit app (see DESIGN.md)."""
