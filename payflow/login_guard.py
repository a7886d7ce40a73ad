"""Admin login throttling, and every failed login in the audit trail.

Reproduced before: 50 wrong passwords in a row, then the right one, logged an operator in,
and no failed attempt was recorded anywhere.

- Each failure counts against the user name and against the client address, for
  ``LOGIN_FAILURE_WINDOW_SECONDS``. At ``LOGIN_FAILURE_LIMIT`` failures of either, the
  login form refuses to try any password (even the right one) until the window has
  passed, with a message saying so. A successful login clears its user name's count.
- Every failed or refused attempt is an audit row (``user.login_failed``) in the same
  hash-chained trail as every change: the account when it exists (the name typed is
  stored only then: an unknown name could be anything, a card number included), the
  address, the failure count and whether the lock is now on.

The counters live in Django's cache (``CACHE_URL``): with several web processes use a
shared one (Redis), or each process counts on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.dispatch import receiver

from audit.actions import Action
from audit.services import audit_record
from payflow.middleware import client_ip
from payflow.platform import context, db, personal


def _client_ip(request: Any) -> str:
    # The audit context's rule (behind the TLS proxy, REMOTE_ADDR is the proxy's address:
    # counting it would let five failures by anyone lock every operator out).
    return (client_ip(request) if request is not None else "") or "unknown"


def _keys(username: str, ip: str) -> tuple[str, str]:
    name = hashlib.sha256(username.casefold().encode("utf-8", "surrogatepass")).hexdigest()
    return f"login-failures:user:{name}", f"login-failures:ip:{ip}"


def failures(username: str, ip: str) -> int:
    """The larger of the user name's and the address's failure counts in the window."""
    return max(cache.get(key, 0) for key in _keys(username, ip))


def is_locked(username: str, ip: str) -> bool:
    return failures(username, ip) >= settings.LOGIN_FAILURE_LIMIT


def _count_failure(username: str, ip: str) -> int:
    counts = []
    for key in _keys(username, ip):
        # add() starts the window; incr() keeps its expiry.
        if cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW_SECONDS):
            counts.append(1)
        else:
            try:
                counts.append(cache.incr(key))
            except ValueError:  # expired between add() and incr()
                cache.add(key, 1, settings.LOGIN_FAILURE_WINDOW_SECONDS)
                counts.append(1)
    return max(counts)


def _failed_login_subject(object_id: str, values: dict[str, Any]) -> str | None:
    # A known user's failed logins are that person's data; a name nobody has is nobody's.
    return personal.person_subject(object_id) if object_id != "unknown" else None


def register_personal_fields() -> None:
    """A failed login on a person's account: its username, address and browser are the
    person's personal data (sealed for them); one on a name nobody has is not sealed."""
    personal.register("auth.user", ("username", "ip"), _failed_login_subject, context=True)


@db.atomic
def _audit_failure(username: str, ip: str, count: int, refused: bool) -> None:
    user = get_user_model().objects.filter(username=username).only("pk").first()
    # The address is the account's person's data (sealed for them), so it is not also the
    # indexed actor id; an attempt on a name nobody has keeps it there.
    with context.bind(**({"actor_id": "login-attempt"} if user is not None else {})):
        audit_record(
            object_type="auth.user",
            object_id=str(user.pk) if user else "unknown",
            action=Action.LOGIN_FAILED,
            event_type="user.login_failed",
            old_values=None,
            new_values={
                "username": username if user else None,
                "ip": ip,
                "failures": count,
                "locked": count >= settings.LOGIN_FAILURE_LIMIT,
                "refused_while_locked": refused,
            },
        )


def record_failure(username: str, request: Any, *, refused: bool = False) -> int:
    """Count one failed attempt and audit it; returns the count now."""
    ip = _client_ip(request)
    count = _count_failure(username, ip)
    who = dataclasses.replace(
        context.current(),
        actor_type="anonymous",
        actor_id=ip[:64],
        actor_label="admin login attempt",
        ip=context.current().ip,
    )
    with context.replaced(who):
        _audit_failure(username, ip, count, refused)
    return count


@receiver(user_login_failed, dispatch_uid="payflow.login_guard.failed")
def _on_login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    record_failure(str(credentials.get("username", ""))[:150], request)


@receiver(user_logged_in, dispatch_uid="payflow.login_guard.succeeded")
def _on_logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    cache.delete(_keys(user.get_username(), _client_ip(request))[0])


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing to check any password while locked."""

    def clean(self) -> dict:
        username = str(self.cleaned_data.get("username") or "")[:150]
        if username and is_locked(username, _client_ip(self.request)):
            record_failure(username, self.request, refused=True)
            minutes = max(1, settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            raise forms.ValidationError(
                f"Too many failed logins for this account or from this address. Try again "
                f"in {minutes} minutes, or ask another operator to check the audit trail.",
                code="login_locked",
            )
        return super().clean()
