"""The card vault's cryptography: keyring, AES-256-GCM sealing, fingerprints.

Every card token's secret fields (PAN, holder name) are one JSON document sealed with
AES-256-GCM under the current key of the keyring (``settings.VAULT_KEYS``, version ->
32-byte key; the highest version is current). Each sealing draws a fresh 96-bit nonce.
The associated data binds the ciphertext to its token id and key version, so a ciphertext
copied to another row, or relabelled with another key version, fails authentication
instead of decrypting to the wrong card.

Decryption has exactly one public entry point, ``reveal_card_for_acquirer``, which runs
only outside database transactions (it sits on the acquirer call path, DESIGN.md section
3). Re-encryption during key rotation (``reseal``) decrypts and re-encrypts in one step
and never hands the plaintext out of this module.

Nothing here raises or logs with a secret in it: ``VaultError`` messages name the token id
and key version only, and ``RevealedCard`` masks the PAN in its ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from ledger.cards import mask_pan
from ledger.exceptions import VaultError, VaultKeyUnavailable
from payflow.platform.db import outside_transaction

if TYPE_CHECKING:
    from ledger.models.vault import CardToken

KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits: the GCM nonce size that needs no extra hashing
_AAD_LABEL = b"payflow/card-token/v1\x00"
_FINGERPRINT_LABEL = b"payflow/card-fingerprint/v1\x00"
_KEY_CHECK_LABEL = b"payflow/vault-key-check/v1"


class Sealed(NamedTuple):
    """A sealed card: what goes into ``CardToken.key_version``, ``nonce`` and ``ciphertext``."""

    key_version: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, repr=False)
class RevealedCard:
    """A decrypted card, for the acquirer request only. Never log, store or pickle it."""

    token_id: uuid.UUID
    brand: str
    pan: str
    exp_month: int
    exp_year: int
    holder_name: str

    def __repr__(self) -> str:
        return (
            f"RevealedCard(token_id={self.token_id}, brand={self.brand}, "
            f"pan={mask_pan(self.pan)}, exp={self.exp_month:02d}/{self.exp_year})"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a revealed card must not be serialized")


# --- keyring --------------------------------------------------------------------------


def keyring() -> dict[int, bytes]:
    """The configured key versions and keys, read from settings on every call.

    Reading each time (it is a dict lookup) means a changed ``VAULT_KEYS`` takes effect
    without a restart of the module, and tests can swap keyrings with ``settings``.
    """
    keys = dict(getattr(settings, "VAULT_KEYS", None) or {})
    if not keys:
        raise VaultKeyUnavailable("VAULT_KEYS is empty: the card vault has no key")
    for version, key in keys.items():
        if not isinstance(version, int) or version < 1:
            raise VaultError("VAULT_KEYS has a key version that is not a positive integer")
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise VaultError(f"VAULT_KEYS version {version} is not a {KEY_BYTES}-byte key")
    return keys


def current_key_version() -> int:
    """The version new tokens are sealed under: the highest in the keyring."""
    return max(keyring())


def _key(version: int, *, token_id: uuid.UUID | None = None) -> bytes:
    keys = keyring()
    if version not in keys:
        subject = f"card token {token_id} is sealed under " if token_id else ""
        raise VaultKeyUnavailable(
            f"{subject}vault key version {version}, which is not in VAULT_KEYS "
            f"(configured versions: {sorted(keys)})"
        )
    return keys[version]


def key_check_value(version: int) -> str:
    """A short public check value of one key version (never the key itself).

    Recorded when a version is first seen, it reveals a key whose bytes changed under the
    same version number (which would make every token under it undecryptable).
    """
    return hmac.new(_key(version), _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


# --- sealing --------------------------------------------------------------------------


def _associated_data(token_id: uuid.UUID, key_version: int) -> bytes:
    return _AAD_LABEL + token_id.bytes + key_version.to_bytes(4, "big")


def encrypt(token_id: uuid.UUID, plaintext_fields: Mapping[str, str]) -> Sealed:
    """Seal ``plaintext_fields`` for token ``token_id`` under the current key, fresh nonce."""
    version = current_key_version()
    nonce = os.urandom(NONCE_BYTES)
    plaintext = json.dumps(
        dict(plaintext_fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    ciphertext = AESGCM(_key(version)).encrypt(
        nonce, plaintext, _associated_data(token_id, version)
    )
    return Sealed(version, nonce, ciphertext)


def _decrypt_fields(
    token_id: uuid.UUID, key_version: int, nonce: bytes, ciphertext: bytes
) -> dict[str, str]:
    key = _key(key_version, token_id=token_id)
    if len(nonce) != NONCE_BYTES:
        raise VaultError(f"card token {token_id} has a malformed nonce: it does not decrypt")
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(token_id, key_version))
    except InvalidTag:
        raise VaultError(
            f"card token {token_id} does not decrypt under key version {key_version}: its "
            "ciphertext, nonce, key version or token id has been altered"
        ) from None
    try:
        fields = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        fields = None
    if not isinstance(fields, dict) or not isinstance(fields.get("pan"), str):
        raise VaultError(f"card token {token_id} decrypted to a malformed document")
    return fields


def _stored(token: CardToken) -> tuple[uuid.UUID, int, bytes, bytes]:
    # BinaryField values come back as bytes (MariaDB) or memoryview (SQLite).
    return token.pk, token.key_version, bytes(token.nonce), bytes(token.ciphertext)


def reseal(token: CardToken) -> Sealed:
    """Decrypt ``token`` and seal the same fields again under the current key (rotation).

    The plaintext never leaves this function. Raises ``VaultError`` like decryption does.
    """
    token_id, key_version, nonce, ciphertext = _stored(token)
    return encrypt(token_id, _decrypt_fields(token_id, key_version, nonce, ciphertext))


@outside_transaction
def reveal_card_for_acquirer(token: CardToken) -> RevealedCard:
    """Decrypt a token's card for one acquirer request: the only public decryption.

    Refuses to run inside a database transaction (``ExternalCallInTransaction``): the
    plaintext exists only on the acquirer call path, after the payment row is committed.
    Raises ``VaultError`` when the ciphertext, nonce, key version or token id was altered,
    and ``VaultKeyUnavailable`` when its key version is not in the keyring.
    """
    fields = _decrypt_fields(*_stored(token))
    return RevealedCard(
        token_id=token.pk,
        brand=token.brand,
        pan=fields["pan"],
        exp_month=token.exp_month,
        exp_year=token.exp_year,
        holder_name=fields.get("name", ""),
    )


# --- fingerprints ---------------------------------------------------------------------


def fingerprint(merchant_id: uuid.UUID | str, pan: str) -> str:
    """HMAC-SHA256 (hex) of merchant id + PAN under ``CARD_FINGERPRINT_KEY``.

    The same card gives the same fingerprint for one merchant and a different one for
    another, so fingerprints cannot be used to link a cardholder across merchants.
    """
    merchant_bytes = uuid.UUID(str(merchant_id)).bytes  # fixed length: no ambiguity
    message = _FINGERPRINT_LABEL + merchant_bytes + pan.encode("ascii")
    return hmac.new(settings.CARD_FINGERPRINT_KEY, message, hashlib.sha256).hexdigest()
