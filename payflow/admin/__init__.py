"""The operators' admin (DESIGN.md section 10). One module per area; importing them
registers their model admins with Django's admin site."""

from django.contrib import admin

from payflow.admin import (
    audit,
    cards,
    jobs,
    journal,
    merchants,
    outbox,
    transactions,
    webhooks,
)
from payflow.login_guard import ThrottledAdminLoginForm

admin.site.login_form = ThrottledAdminLoginForm  # throttled; failed logins audited

__all__ = [
    "audit",
    "cards",
    "jobs",
    "journal",
    "merchants",
    "outbox",
    "transactions",
    "webhooks",
]
