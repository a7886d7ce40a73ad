"""No card number from anywhere but the card field.

A PAN typed into ``metadata``, a reference, a reason, the ``Idempotency-Key``, a query
parameter or even a field's *name* would be stored in rows that can never be deleted
(audit), published to Kafka and echoed in responses. ``NoCardNumbersInText`` (a DRF
permission, so it runs on every API request after authentication and before the view)
refuses such a request with ``400 invalid_request_error`` / ``card_number_not_allowed``,
``param`` naming the field (never the value, and never a field name that is itself the
card number), before anything is claimed, stored or logged by the view.

What counts as a card number is what the log filter masks (``payflow.logging``): a run of
digit groups separated by single spaces or dashes of which whole groups totalling 13 to 19
digits pass the Luhn check; canonical UUIDs are not card numbers. The card's own fields
(``card[number]``, ``cvc``) and the token id are where card data belongs and are not
checked here (the serializers and the vault validate them).
"""

from __future__ import annotations

from typing import Any

from payflow.api.errors import ApiError
from payflow.logging import redact_pans

#: Paths (field names from the body's root) where a card number belongs.
CARD_FIELDS = {("card", "number"), ("card", "cvc"), ("cvc",), ("token",)}


def contains_card_number(text: str) -> bool:
    return redact_pans(text) != text


def _param(path: tuple[str, ...]) -> str | None:
    if not path:
        return None
    return path[0] + "".join(f"[{name}]" for name in path[1:])


def _card_number_in(value: Any, path: tuple[str, ...]) -> tuple[bool, str | None]:
    """(found, param) for the first card number in ``value`` found at ``path``."""
    if isinstance(value, dict):
        for key, item in value.items():
            if contains_card_number(str(key)):
                return True, _param(path)  # the name is the number: name its parent only
            found = _card_number_in(item, (*path, str(key)))
            if found[0]:
                return found
        return False, None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _card_number_in(item, (*path, str(index)))
            if found[0]:
                return found
        return False, None
    if isinstance(value, bool) or value is None or path in CARD_FIELDS:
        return False, None
    if isinstance(value, str | int | float):
        return contains_card_number(str(value)), _param(path)
    return False, None


def _refusal(param: str | None) -> ApiError:
    where = param or "A field name"
    return ApiError(
        400,
        "invalid_request_error",
        "card_number_not_allowed",
        f"{where} looks like it holds a card number. Card numbers are accepted in "
        "card[number] only (or send a token); it was not stored.",
        param,
    )


def refuse_card_numbers(request) -> None:
    """Raise the 400 when the request carries a card number outside the card's fields:
    in the ``Idempotency-Key``, a query parameter (name or value) or the body."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and contains_card_number(key):
        raise _refusal("Idempotency-Key")
    for name, values in request.query_params.lists():
        if contains_card_number(name):
            raise _refusal(None)
        if any(contains_card_number(value) for value in values):
            raise _refusal(name)
    if request.method in ("POST", "PUT", "PATCH"):
        found, param = _card_number_in(request.data, ())
        if found:
            raise _refusal(param)


class NoCardNumbersInText:
    """Permission: runs ``refuse_card_numbers`` on every API request."""

    def has_permission(self, request, view) -> bool:
        refuse_card_numbers(request)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        return True
