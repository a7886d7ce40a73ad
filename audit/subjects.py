"""Data subjects' keys (``payflow.platform.personal``): kept wrapped in the database,
cached per process, destroyed by an erasure.

A subject's key is 32 random bytes, made the first time something personal of the subject
is sealed (in that change's transaction), stored wrapped under a key derived from the
vault's current key (``DataSubjectKey``). A process caches opened keys for
``AUDIT_SUBJECT_KEY_CACHE_SECONDS``: after an erasure, another process may still open the
subject's values for at most that long (the erasing process forgets at once). A key made
read or made inside a transaction is cached only once that transaction commits.

``subject_erase`` destroys a key and records the erasure (``data_subject.erased`` on
``audit.datasubject``), in one transaction with whatever the caller anonymises.
"""

from __future__ import annotations

import os
import threading
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.actions import Action
from audit.models import DataSubjectKey
from audit.services import audit_record
from ledger import vault
from payflow.platform import db, personal

KEY_BYTES = 32
NONCE_BYTES = 12
_KEK_INFO = b"payflow-subject-kek/1"
#: The object the erasures are recorded on (its id is the subject).
OBJECT_TYPE = "audit.datasubject"


class UnknownSubject(Exception):
    """An erasure named a subject that is not one (empty, too long, no ``kind:``)."""


def _kek(version: int) -> bytes:
    keys = vault.keyring()
    if version not in keys:
        raise vault.VaultKeyUnavailable(
            f"subject keys are wrapped under vault key version {version}, which is not in "
            "VAULT_KEYS"
        )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEK_INFO).derive(
        keys[version]
    )


def _wrap(subject: str, key: bytes, version: int) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_kek(version)).encrypt(nonce, key, subject.encode())


def _unwrap(subject: str, wrapped: bytes, version: int) -> bytes | None:
    try:
        return AESGCM(_kek(version)).decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], subject.encode()
        )
    except InvalidTag:
        return None  # not this subject's (moved between rows): as good as erased


def _opened(subject: str, wrapped: bytes | None, version: int) -> bytes | None:
    """A key row's key: ``None`` once erased (its wrapped key gone)."""
    return None if wrapped is None else _unwrap(subject, bytes(wrapped), version)


class DatabaseKeyStore:
    """The key store ``payflow.platform.personal`` uses (installed by ``audit.apps``)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()

    def _cached(self, subject: str) -> tuple[bool, bytes | None]:
        with self._lock:
            hit = self._cache.get(subject)
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def _remember(self, subject: str, key: bytes | None) -> None:
        ttl = float(settings.AUDIT_SUBJECT_KEY_CACHE_SECONDS)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[subject] = (key, time.monotonic() + ttl)

    def forget(self, subject: str | None = None) -> None:
        with self._lock:
            if subject is None:
                self._cache.clear()
            else:
                self._cache.pop(subject, None)

    def _read(self, subject: str) -> tuple[bool, bytes | None]:
        row = (
            DataSubjectKey.objects.filter(subject=subject)
            .values_list("wrapped", "kek_version")
            .first()
        )
        if row is None:
            return False, None
        wrapped, version = row
        return True, _opened(subject, wrapped, version)

    def key_for(self, subject: str, *, create: bool, fresh: bool = False) -> bytes | None:
        hit, key = self._cached(subject)
        if hit:
            return key
        if fresh and create:  # a subject born with this change (a new card): no lookup
            return self._make(subject, savepoint=False)
        found, key = self._read(subject)
        if found:
            self._remember_at_commit(subject, key)
            return key
        if not create:
            return None
        return self._make(subject, savepoint=True)

    def prefetch(self, subjects: set[str]) -> None:
        """Read the keys of ``subjects`` not cached, in one query, into the cache (a page of
        events, a chunk of reconciled rows: one read, not one per cardholder)."""
        wanted = [subject for subject in subjects if not self._cached(subject)[0]]
        if not wanted:
            return
        rows = DataSubjectKey.objects.filter(subject__in=wanted).values_list(
            "subject", "wrapped", "kek_version"
        )
        for subject, wrapped, version in rows:
            key = _opened(subject, wrapped, version)
            self._remember_at_commit(subject, key)

    def erased(self, subject: str) -> bool:
        hit, key = self._cached(subject)  # only a found row is cached
        if hit:
            return key is None
        found, key = self._read(subject)
        return found and key is None

    def _remember_at_commit(self, subject: str, key: bytes | None) -> None:
        # Inside a transaction the row read may be this transaction's own, uncommitted:
        # cached only once it commits (a rollback, or a savepoint's, discards the callback).
        if transaction.get_connection().in_atomic_block:
            transaction.on_commit(lambda: self._remember(subject, key))
        else:
            self._remember(subject, key)

    def _make(self, subject: str, *, savepoint: bool) -> bytes | None:
        key = os.urandom(KEY_BYTES)
        version = vault.current_key_version()
        row = DataSubjectKey(
            subject=subject, wrapped=_wrap(subject, key, version), kek_version=version
        )
        if not savepoint:
            row.save(force_insert=True)
            self._remember_at_commit(subject, key)
            return key
        try:
            with transaction.atomic():  # a savepoint: a concurrent maker's row wins
                row.save(force_insert=True)
        except IntegrityError:
            wrapped, version = (
                DataSubjectKey.objects.select_for_update()  # the committed row, not a snapshot
                .filter(subject=subject)
                .values_list("wrapped", "kek_version")
                .get()
            )
            return _opened(subject, wrapped, version)
        self._remember_at_commit(subject, key)
        return key

    def erase(self, subject: str) -> None:
        now = timezone.now()
        updated = DataSubjectKey.objects.filter(subject=subject).update(wrapped=None, erased_at=now)
        if not updated:  # nothing sealed yet: an erased row stops a key being made later
            DataSubjectKey.objects.create(
                subject=subject,
                wrapped=None,
                kek_version=vault.current_key_version(),
                erased_at=now,
            )
        self.forget(subject)
        transaction.on_commit(lambda: self.forget(subject))


STORE = DatabaseKeyStore()


@db.atomic
def subject_erase(subject: str, *, anonymised: dict[str, int] | None = None) -> None:
    """Destroy ``subject``'s key and record the erasure (the actor and reason come from the
    audit context; ``anonymised``: how many rows of each kind the caller anonymised in the
    same transaction). Erasing an erased subject again records it again and changes
    nothing else."""
    if not subject or len(subject) > 64 or ":" not in subject:
        raise UnknownSubject(f"{subject!r} is not a data subject (kind:id)")
    personal.key_store().erase(subject)
    audit_record(
        object_type=OBJECT_TYPE,
        object_id=subject,
        action=Action.ERASE,
        event_type="data_subject.erased",
        old_values=None,
        new_values={"subject": subject, "anonymised": anonymised or {}},
    )
