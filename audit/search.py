"""Finding audit entries by what people know (the auditors' search box).

A search names objects by their public id (``pay_…``, ``re_…``, ``cb_…``, ``po_…``,
``acct_…``, ``tok_…``), their internal id, a merchant's name (any part of it, any case) or
a transaction's external reference; and filters entries by event type (``payment.*`` for a
prefix), actor (a user name, an API key as ``sk_test_abc123…`` or its prefix, or an actor id
such as ``command:counsel`` or ``task:…``) and time range. Entries come newest first, a page
at a time (``before``: the last entry id of the previous page).

Nothing typed into the box is echoed back unless it matched something: a card number typed
there by mistake is never written into the page.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Q

from audit.models import AuditEntry, LogLeaf
from audit.objects import from_public_id, history_types, public_ids
from ledger.currencies import to_major
from ledger.models import ApiKey, CardToken, Merchant, Transaction

PAGE = 100
_OBJECT_LIMIT = 50


@dataclass(frozen=True)
class Found:
    """An object the search text named: its type and id as entries name it."""

    object_type: str
    object_id: str
    public_id: str
    label: str  # how a person knows it: the merchant's name, the transaction's kind and amount


@dataclass
class SearchResult:
    objects: list[Found] = field(default_factory=list)
    entries: list[dict] = field(default_factory=list)
    before: int | None = None  # the next page starts before this entry id
    problem: str = ""  # why nothing was searched (a filter that cannot be read)


def search(
    *,
    text: str = "",
    event_type: str = "",
    actor: str = "",
    since: datetime.datetime | None = None,
    until: datetime.datetime | None = None,
    before: int | None = None,
) -> SearchResult:
    """The objects ``text`` names and the entries (of those objects, when ``text`` is given)
    that pass every filter; an empty result when a filter names nothing."""
    result = SearchResult()
    entries = AuditEntry.objects.all()
    if text.strip():
        result.objects = find_objects(text.strip())
        if not result.objects:
            return result
        wanted = Q()
        for found in result.objects:
            wanted |= Q(object_type__in=history_types(found.object_type), object_id=found.object_id)
        entries = entries.filter(wanted)
    if event_type.strip():
        kind = event_type.strip()
        entries = (
            entries.filter(event_type__startswith=kind[:-1])
            if kind.endswith("*")
            else entries.filter(event_type=kind)
        )
    if actor.strip():
        actor_ids = actor_ids_for(actor.strip())
        if not actor_ids:
            return result
        entries = entries.filter(actor_id__in=actor_ids)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    if before is not None:
        entries = entries.filter(id__lt=before)
    rows = list(
        entries.order_by("-id").values(
            "id",
            "object_type",
            "object_id",
            "event_type",
            "actor_type",
            "actor_id",
            "request_id",
            "created_at",
        )[: PAGE + 1]
    )
    if len(rows) > PAGE:
        rows = rows[:PAGE]
        result.before = rows[-1]["id"]
    names = public_ids([(row["object_type"], row["object_id"]) for row in rows])
    indexes = dict(
        LogLeaf.objects.filter(entry_id__in=[row["id"] for row in rows]).values_list(
            "entry_id", "index"
        )
    )
    for row in rows:
        row["public_id"] = names[(row["object_type"], row["object_id"])]
        row["index"] = indexes.get(row["id"])
    result.entries = rows
    return result


def find_objects(text: str) -> list[Found]:
    """The objects ``text`` names: a public id, an internal id, part of a merchant's name,
    or a transaction's external reference."""
    named = from_public_id(text)
    if named is not None:
        return _described([named])
    try:
        value = uuid.UUID(text)
    except ValueError:
        value = None
    if value is not None:
        candidates = [
            ("ledger.transaction", Transaction),
            ("ledger.merchant", Merchant),
            ("ledger.cardtoken", CardToken),
            ("ledger.apikey", ApiKey),
        ]
        return _described(
            [
                (label, str(value))
                for label, model in candidates
                if model.objects.filter(pk=value).exists()
            ]
        )
    found = [
        ("ledger.merchant", str(pk))
        for pk in Merchant.objects.filter(name__icontains=text)
        .order_by("name")
        .values_list("pk", flat=True)[:_OBJECT_LIMIT]
    ]
    found += [
        ("ledger.transaction", str(pk))
        for pk in Transaction.objects.filter(external_reference=text)
        .order_by("-initiated_at")
        .values_list("pk", flat=True)[:_OBJECT_LIMIT]
    ]
    return _described(found)


def actor_ids_for(text: str) -> list[str]:
    """The actor ids (as entries record them) ``text`` names: a user's name, an API key
    (``sk_<mode>_<prefix>…`` as the admin shows it, or the prefix alone), or an actor id
    itself (``command:counsel``, ``task:…``, a key or user id)."""
    ids = [text]
    users = get_user_model().objects.filter(username=text).values_list("pk", flat=True)
    ids += [str(pk) for pk in users]
    prefix = text.rstrip("…").rsplit("_", 1)[-1]
    if prefix:
        ids += [str(pk) for pk in ApiKey.objects.filter(prefix=prefix).values_list("pk", flat=True)]
    return ids


def _described(objects: list[tuple[str, str]]) -> list[Found]:
    names = public_ids(objects)
    merchants = dict(
        Merchant.objects.filter(
            pk__in=[object_id for kind, object_id in objects if kind == "ledger.merchant"]
        ).values_list("pk", "name")
    )
    transactions = {
        pk: (kind, amount, currency, merchant)
        for pk, kind, amount, currency, merchant in Transaction.objects.filter(
            pk__in=[object_id for kind, object_id in objects if kind == "ledger.transaction"]
        ).values_list("pk", "type", "amount", "currency", "merchant__name")
    }
    found = []
    for object_type, object_id in objects:
        label = object_type
        if object_type == "ledger.merchant":
            label = f"merchant {merchants.get(uuid.UUID(object_id), '')}".strip()
        elif object_type == "ledger.transaction" and uuid.UUID(object_id) in transactions:
            kind, amount, currency, merchant = transactions[uuid.UUID(object_id)]
            label = f"{kind} of {to_major(amount, currency)} {currency}, {merchant}"
        found.append(Found(object_type, object_id, names[(object_type, object_id)], label))
    return found
