"""Personal data in audit entries and events: sealed under a key per data subject.

The audit log keeps entries for years and its hashes cover every byte of them, so personal
data cannot be removed from an entry without breaking the proof. Instead each personal
value is stored encrypted under a key that belongs to one data subject (a cardholder, a
person operating the admin); erasing the subject destroys that key (``KeyStore.erase``).
The entry's bytes, its hash, the log's tree, old evidence bundles and archived segments
are untouched and still verify; the value reads as erased (``ERASED``) from then on.

What is personal (``docs/audit-formats.md`` §1.3):

- the fields each object type registers (``register``), e.g. a transaction's ``metadata``
  and ``reason`` (free text), a card token's fingerprint, a failed login's username and
  address; the registration also says whose they are;
- for an actor who is a person (actor type ``user``): the entry's ``ip``, ``user_agent``
  and ``reason``, and the actor's ``label``, all the person's own; for an object type
  registered with ``context=True`` (a failed login on a person's account), the entry's
  ``ip``, ``user_agent`` and ``reason`` are the object's subject's; and an entry's
  ``reason`` is the object's subject's whenever the object has one (an operator's reason
  for refunding a cardholder's payment names the cardholder, not the operator).

A sealed value, in the entry's canonical bytes (and in an event's payload), is the object
``{"sealed": base64(nonce ‖ ciphertext ‖ tag), "subject": "<subject>"}``: AES-256-GCM of
the value's canonical JSON, with the associated data
``"payflow-personal/1" 0x00 subject 0x00 object_type 0x00 object_id 0x00 field``, so a
sealed value moved to another field, object or subject does not open. A value for a subject
already erased is written as ``{"erased": true, "subject": "<subject>"}``. Empty values
(``""``, ``{}``, ``null``) are not sealed: they hold nothing about anyone.

The platform knows the format; the audit app installs the key store (``set_key_store``),
which keeps the subjects' keys wrapped in the database.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION_TAG = b"payflow-personal/1"
NONCE_BYTES = 12
#: What a value reads as once its subject was erased (or its key cannot open it).
ERASED = "[erased]"
CONTEXT_FIELDS = ("ip", "user_agent", "reason")
PERSON_ACTOR = "user"

SubjectOf = Callable[[str, dict[str, Any]], "str | None"]


class KeyStore(Protocol):
    def key_for(self, subject: str, *, create: bool, fresh: bool = False) -> bytes | None:
        """The subject's key; ``None`` when it was erased (or, with ``create=False``, never
        made). ``create=True`` makes one for a new subject, in the current transaction;
        ``fresh``: the subject is born with this change (no need to look it up first)."""

    def erase(self, subject: str) -> None:
        """Destroy the subject's key."""

    def erased(self, subject: str) -> bool:
        """Whether the subject's key was destroyed (a subject never keyed is not)."""

    def prefetch(self, subjects: set[str]) -> None:
        """Load the keys of ``subjects`` at once (an optimisation: ``key_for`` after it
        needs no read)."""


@dataclass(frozen=True)
class Registration:
    fields: tuple[str, ...]
    subject_of: SubjectOf  # (object_id, values) → subject, or None: nobody's
    # The entry's context (ip, user agent, reason) is the subject's too, whoever the
    # actor is (a failed login on a person's account: the attempt came from them or at them).
    context: bool = False
    # The object's insert creates its subject (a card token is its cardholder's): the key
    # is made without looking for one first.
    born_with_insert: bool = False


_registry: dict[str, Registration] = {}
_store: KeyStore | None = None


def register(
    object_type: str,
    fields: tuple[str, ...],
    subject_of: SubjectOf,
    *,
    context: bool = False,
    born_with_insert: bool = False,
) -> None:
    """Declare ``fields`` of ``object_type``'s values personal data of ``subject_of`` (and,
    with ``context``, the entry's ip, user agent and reason)."""
    _registry[object_type] = Registration(fields, subject_of, context, born_with_insert)


def registered() -> dict[str, Registration]:
    return dict(_registry)


def set_key_store(store: KeyStore) -> None:
    """Install the key store (the audit app's)."""
    global _store
    _store = store


def key_store() -> KeyStore:
    if _store is None:
        raise RuntimeError("no personal-data key store installed (is the audit app installed?)")
    return _store


def person_subject(actor_id: str) -> str:
    """The subject of a person who acts in the admin: ``user:<id>``."""
    return f"user:{actor_id}"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _associated(subject: str, object_type: str, object_id: str, field: str) -> bytes:
    return b"\x00".join(
        [VERSION_TAG, subject.encode(), object_type.encode(), object_id.encode(), field.encode()]
    )


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == {} or value == []


def is_sealed(value: Any) -> bool:
    return (
        type(value) is dict
        and set(value) in ({"sealed", "subject"}, {"erased", "subject"})
        and type(value["subject"]) is str
    )


def seal(
    value: Any, *, subject: str, object_type: str, object_id: str, field: str, fresh: bool = False
) -> Any:
    """``value`` sealed for ``subject`` (already canonical: ``trail.canonical_values``)."""
    if _empty(value):
        return value
    key = key_store().key_for(subject, create=True, fresh=fresh)
    if key is None:
        return {"erased": True, "subject": subject}
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(
        nonce, _canonical(value), _associated(subject, object_type, object_id, field)
    )
    return {"sealed": base64.b64encode(nonce + ciphertext).decode(), "subject": subject}


def reveal(value: Any, *, object_type: str, object_id: str, field: str) -> Any:
    """The plaintext of a sealed value, ``ERASED`` if it cannot be opened any more; any
    other value as it is."""
    if not is_sealed(value):
        return value
    if "erased" in value:
        return ERASED
    key = key_store().key_for(value["subject"], create=False)
    if key is None:
        return ERASED
    try:
        raw = base64.b64decode(value["sealed"], validate=True)
        plaintext = AESGCM(key).decrypt(
            raw[:NONCE_BYTES],
            raw[NONCE_BYTES:],
            _associated(value["subject"], object_type, object_id, field),
        )
    except (ValueError, InvalidTag):
        return ERASED
    return json.loads(plaintext)


def seal_values(
    object_type: str, object_id: str, values: dict[str, Any] | None, *, inserted: bool = False
) -> Any:
    """``values`` (an entry's ``old``/``new``, an event's payload) with the registered
    personal fields sealed; the same dict when there is nothing to seal. ``inserted``: the
    values are the object's first (its insert)."""
    registration = _registry.get(object_type)
    if not values or registration is None:
        return values
    if all(_empty(values.get(name)) for name in registration.fields):
        return values
    subject = registration.subject_of(object_id, values)
    if subject is None:
        return values
    sealed = dict(values)
    fresh = inserted and registration.born_with_insert
    for name in registration.fields:
        if name in sealed:
            sealed[name] = seal(
                sealed[name],
                subject=subject,
                object_type=object_type,
                object_id=object_id,
                field=name,
                fresh=fresh,
            )
            fresh = False  # made now: the next one finds it
    return sealed


def prefetch_keys(values: Iterable[dict[str, Any] | None]) -> None:
    """Load, in one read, the keys of every subject a sealed member of ``values`` names
    (before revealing many objects' values: one read for all, not one per subject)."""
    subjects = {
        value["subject"]
        for members in values
        if members
        for value in members.values()
        if is_sealed(value) and "sealed" in value
    }
    if subjects:
        key_store().prefetch(subjects)


def reveal_values(object_type: str, object_id: str, values: dict[str, Any] | None) -> Any:
    """``values`` with every sealed member opened (or ``ERASED``)."""
    if not values or not any(is_sealed(value) for value in values.values()):
        return values
    return {
        name: reveal(value, object_type=object_type, object_id=object_id, field=name)
        for name, value in values.items()
    }


def seal_entry(fields: dict[str, Any], *, reason_subject: str | None = None) -> dict[str, Any]:
    """An entry's members (``trail.prepare``'s, values canonical) with its personal data
    sealed: the registered fields of ``old`` and ``new``, and a person's context.
    ``reason_subject``: whose the reason is, if the context says (an operator action)."""
    object_type, object_id = fields["object_type"], fields["object_id"]
    for side in ("old", "new"):
        fields[side] = seal_values(
            object_type, object_id, fields[side], inserted=fields["action"] == "insert"
        )
    actor = fields["actor"]
    person = person_subject(actor["id"]) if actor["type"] == PERSON_ACTOR and actor["id"] else None
    context_subject = _object_subject(fields, context_only=True)
    for name in CONTEXT_FIELDS:
        if _empty(fields[name]):
            continue
        # A reason is about the object: its subject's when it has one (an operator's
        # reason for refunding a cardholder's payment is the cardholder's data), else the
        # person's who wrote it. Address and browser are the person's.
        if name == "reason":
            subject = reason_subject or context_subject or _object_subject(fields) or person
        else:
            subject = context_subject or person
        if subject is not None:
            fields[name] = seal(
                fields[name],
                subject=subject,
                object_type=object_type,
                object_id=object_id,
                field=name,
            )
    if person:
        fields["actor"] = {
            **actor,
            "label": seal(
                actor["label"],
                subject=person,
                object_type=object_type,
                object_id=object_id,
                field="actor.label",
            ),
        }
    return fields


def _object_subject(fields: dict[str, Any], *, context_only: bool = False) -> str | None:
    """The entry's object's subject; with ``context_only``, only if the registration says
    the entry's context is that subject's too."""
    registration = _registry.get(fields["object_type"])
    if registration is None or (context_only and not registration.context):
        return None
    return registration.subject_of(fields["object_id"], fields["new"] or fields["old"] or {})


def reveal_entry(fields: dict[str, Any]) -> dict[str, Any]:
    """An entry's parsed members with every sealed value opened (or ``ERASED``)."""
    object_type, object_id = fields["object_type"], fields["object_id"]
    opened = dict(fields)
    for side in ("old", "new"):
        opened[side] = reveal_values(object_type, object_id, fields[side])
    for name in CONTEXT_FIELDS:
        opened[name] = reveal(
            fields[name], object_type=object_type, object_id=object_id, field=name
        )
    actor = fields["actor"]
    if is_sealed(actor.get("label")):
        opened["actor"] = {
            **actor,
            "label": reveal(
                actor["label"], object_type=object_type, object_id=object_id, field="actor.label"
            ),
        }
    return opened
