"""Card vault services: tokenize a card, re-encrypt tokens under the current key, rotation.

The cryptography is in ``ledger.vault``; the validation in ``ledger.cards``. Here are the
writes: each owns its transaction (``payflow.platform.db.atomic``) and sends ``ledger_changed``
from inside it. Nothing here calls the outside world, and nothing here decrypts except
``vault.reseal`` during rotation, which never hands the plaintext out.
"""

from __future__ import annotations

import copy
import datetime
import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.db.models import Count
from django.utils import timezone

from ledger import vault
from ledger.cards import validate_card
from ledger.events import EventType
from ledger.exceptions import ConcurrentUpdate, InvalidCard, MerchantInactive, VaultError
from ledger.models import CardToken, Merchant, MerchantStatus
from ledger.models.vault import VaultKey
from ledger.services.transitions import row_compare_and_set
from ledger.signals import insert_audited
from payflow.platform import caches, db

logger = logging.getLogger(__name__)

HOLDER_NAME_MAX_LENGTH = 100
DEFAULT_ROTATION_DAYS = 90


# --- tokenization ---------------------------------------------------------------------


def _clean_holder_name(holder_name: Any) -> str:
    if holder_name is None:
        return ""
    if not isinstance(holder_name, str):
        raise InvalidCard("the cardholder name must be a string", param="card[name]")
    name = " ".join(holder_name.split())
    if len(name) > HOLDER_NAME_MAX_LENGTH:
        raise InvalidCard(
            f"the cardholder name is at most {HOLDER_NAME_MAX_LENGTH} characters",
            param="card[name]",
        )
    return name


#: Card tokens by id, for ``API_CACHE_SECONDS`` (an erasure made in this process is
#: forgotten at its commit, one made elsewhere within the TTL).
_TOKENS = caches.ProcessCache(
    "card_tokens", ttl=lambda: settings.API_CACHE_SECONDS, labels=("ledger.cardtoken",)
)


def card_token_lookup(*, token_id: Any, merchant_id: Any, livemode: bool) -> CardToken | None:
    """The merchant's token ``token_id`` in that mode, or None (unknown, another merchant's
    or mode's). A token read in the last ``API_CACHE_SECONDS`` is not read again; a copy
    of the cached row is returned."""
    token = _TOKENS.get(token_id)
    if token is None:
        since = caches.epoch()
        token = CardToken.objects.filter(pk=token_id).first()
        if token is None:
            return None
        tags = [caches.tag("ledger.cardtoken", token.pk)]
        _TOKENS.put_after_commit(token_id, token, tags=tags, since=since)
    if str(token.merchant_id) != str(merchant_id) or token.livemode != livemode:
        return None
    return copy.copy(token)


@db.atomic
def card_tokenize(
    *,
    merchant: Merchant,
    livemode: bool = False,
    number: str,
    exp_month: int | str,
    exp_year: int | str,
    holder_name: str = "",
) -> CardToken:
    """Tokenize a card for ``merchant``: validate it, seal the PAN, insert a ``CardToken``.

    One transaction: re-reads the merchant's status (a suspension committed a moment ago
    wins), inserts the token and sends ``card_token.created`` from inside it (audit row,
    outbox event; the snapshot has brand, last4, expiry, fingerprint, never the PAN or the
    ciphertext). No call to the outside world. The PAN and the holder name exist only in
    the ciphertext; there is no CVC here (it goes to the acquirer once, never to the vault).

    The same card tokenized twice gives two tokens with the same ``fingerprint`` (for this
    merchant; another merchant gets a different one). Raises ``InvalidCard`` (with
    ``param``) and ``MerchantInactive``.
    """
    card = validate_card(number, exp_month, exp_year)
    name = _clean_holder_name(holder_name)
    if not Merchant.objects.filter(pk=merchant.pk, status=MerchantStatus.ACTIVE).exists():
        raise MerchantInactive("this merchant is suspended and cannot tokenize cards")
    token_id = db.uuid7()
    sealed = vault.encrypt(token_id, {"pan": card.number, "name": name})
    return insert_audited(
        CardToken(
            id=token_id,
            merchant=merchant,
            livemode=livemode,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            fingerprint=vault.fingerprint(merchant.pk, card.number),
            key_version=sealed.key_version,
            nonce=sealed.nonce,
            ciphertext=sealed.ciphertext,
        ),
        event_type=EventType.CARD_TOKEN_CREATED,
    )


# --- re-encryption (key rotation) -----------------------------------------------------


@dataclass(frozen=True)
class ReencryptionBatch:
    """What one batch did. ``last_id`` is the cursor for the next batch (None: done)."""

    reencrypted: int
    skipped: int  # changed by someone else since it was read: left for the next run
    failed: int  # did not decrypt (VaultError): left as it is, logged with its id
    last_id: uuid.UUID | None


def _reseal_all(tokens: list[CardToken]) -> tuple[list[tuple[CardToken, vault.Sealed]], int]:
    resealed, failed = [], 0
    for token in tokens:
        try:
            resealed.append((token, vault.reseal(token)))
        except VaultError as exc:
            # One bad row must not stop the rotation of the others; it needs a human.
            failed += 1
            logger.error("vault re-encryption skipped card token %s: %s", token.pk, exc)
    return resealed, failed


@db.atomic
def _store_resealed(resealed: list[tuple[CardToken, vault.Sealed]]) -> int:
    stored = 0
    for token, sealed in resealed:
        # Compare-and-set on version: a token changed since it was read is skipped, never
        # overwritten with what we sealed from its older state. On a copy: this function
        # may run again after a conflict, with the same inputs.
        try:
            row_compare_and_set(
                copy.copy(token),
                event_type=EventType.CARD_TOKEN_REENCRYPTED,
                key_version=sealed.key_version,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
            )
        except ConcurrentUpdate:
            continue
        stored += 1
    return stored


def vault_reencrypt_batch(
    *, batch_size: int = 200, after: uuid.UUID | None = None
) -> ReencryptionBatch:
    """Re-encrypt up to ``batch_size`` tokens sealed under an older key, oldest id first.

    Reads and re-seals outside any transaction (pure CPU), then writes the batch in one
    small transaction, each token as a compare-and-set on ``version`` sending
    ``card_token.reencrypted``. Tokens that changed meanwhile are skipped; tokens that do
    not decrypt are logged and skipped. Every token stays decryptable throughout: a token
    is either still on its old key (still in the keyring) or already on the current one.

    Pass the previous batch's ``last_id`` as ``after`` to move on past skipped and failed
    tokens; ``last_id`` is None when no candidate was left. Tokens on a key version that is
    no longer in the keyring cannot be re-encrypted and are not candidates (see
    ``vault_rotation_status``).
    """
    current = vault.current_key_version()
    old_versions = sorted(version for version in vault.keyring() if version != current)
    if not old_versions:
        return ReencryptionBatch(reencrypted=0, skipped=0, failed=0, last_id=None)
    candidates = CardToken.objects.filter(key_version__in=old_versions).order_by("pk")
    if after is not None:
        candidates = candidates.filter(pk__gt=after)
    tokens = list(candidates[:batch_size])
    if not tokens:
        return ReencryptionBatch(reencrypted=0, skipped=0, failed=0, last_id=None)
    resealed, failed = _reseal_all(tokens)
    reencrypted = _store_resealed(resealed) if resealed else 0
    return ReencryptionBatch(
        reencrypted=reencrypted,
        skipped=len(resealed) - reencrypted,
        failed=failed,
        last_id=tokens[-1].pk,
    )


# --- rotation check -------------------------------------------------------------------


def rotation_days() -> int:
    return int(getattr(settings, "VAULT_ROTATION_DAYS", DEFAULT_ROTATION_DAYS))


@db.atomic
def _vault_key_insert(version: int, key_check: str, now: datetime.datetime) -> VaultKey:
    return insert_audited(
        VaultKey(version=version, key_check=key_check, first_seen_at=now),
        event_type=EventType.VAULT_KEY_REGISTERED,
    )


def vault_keys_register(*, now: datetime.datetime | None = None) -> list[int]:
    """Record each key version of the keyring not seen before (``VaultKey``); return them.

    One small transaction per new version, sending ``vault_key.registered`` (the version,
    its check value and the time; never the key). A version recorded concurrently by
    another run is left as that run recorded it. No call to the outside world.
    """
    now = now or timezone.now()
    known = set(VaultKey.objects.values_list("version", flat=True))
    registered = []
    for version in sorted(set(vault.keyring()) - known):
        try:
            _vault_key_insert(version, vault.key_check_value(version), now)
        except IntegrityError:
            continue  # another run recorded it first: its first_seen_at stands
        registered.append(version)
    return registered


@dataclass(frozen=True)
class VaultRotationStatus:
    current_key_version: int
    configured_key_versions: list[int]
    tokens_by_key_version: dict[int, int]
    tokens_not_on_current_key: int
    #: Versions tokens are sealed under that are not in VAULT_KEYS: those do not decrypt.
    missing_key_versions: list[int]
    #: Versions whose key no longer matches the check value recorded when first seen.
    changed_key_versions: list[int]
    current_key_first_seen_at: datetime.datetime | None
    current_key_age_days: int | None
    rotation_days: int
    rotation_due: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (a Celery result): string keys, ISO time."""
        values = asdict(self)
        values["tokens_by_key_version"] = {
            str(version): count for version, count in self.tokens_by_key_version.items()
        }
        if self.current_key_first_seen_at is not None:
            values["current_key_first_seen_at"] = self.current_key_first_seen_at.isoformat()
        return values


def vault_rotation_status(*, now: datetime.datetime | None = None) -> VaultRotationStatus:
    """Where the rotation stands: key versions in use, tokens left on older keys, key age.

    Read only. The current key's age counts from when ``vault_keys_register`` first saw it;
    ``rotation_due`` is true once it is older than ``VAULT_ROTATION_DAYS`` (default 90).
    """
    now = now or timezone.now()
    keys = vault.keyring()
    current = max(keys)
    counts = dict(
        CardToken.objects.order_by()
        .values("key_version")
        .annotate(n=Count("pk"))
        .values_list("key_version", "n")
    )
    recorded = {key.version: key for key in VaultKey.objects.all()}
    changed = sorted(
        version
        for version in keys
        if version in recorded and recorded[version].key_check != vault.key_check_value(version)
    )
    first_seen = recorded[current].first_seen_at if current in recorded else None
    age = now - first_seen if first_seen is not None else None
    return VaultRotationStatus(
        current_key_version=current,
        configured_key_versions=sorted(keys),
        tokens_by_key_version=dict(sorted(counts.items())),
        tokens_not_on_current_key=sum(n for version, n in counts.items() if version != current),
        missing_key_versions=sorted(version for version in counts if version not in keys),
        changed_key_versions=changed,
        current_key_first_seen_at=first_seen,
        current_key_age_days=age.days if age is not None else None,
        rotation_days=rotation_days(),
        rotation_due=age is not None and age > datetime.timedelta(days=rotation_days()),
    )
