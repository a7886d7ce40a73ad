"""Webhook signing secrets: made, sealed for storage and opened to sign.

A secret is ``whsec_`` and 32 random bytes in URL-safe base64; the merchant sees it once.
Stored sealed with AES-GCM under a key derived (HKDF-SHA256, its own ``info``) from the
card vault's current key, so that a copy of the database alone signs nothing and a vault
key rotation covers these too: the stored value is ``version (2 bytes) ‖ nonce (12) ‖
ciphertext``, the endpoint's id the associated data.
"""

from __future__ import annotations

import base64
import os
import secrets as random
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger import vault

PREFIX = "whsec_"
_INFO = b"payflow webhook endpoint secret v1"
_NONCE = 12


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(random.token_bytes(32)).decode().rstrip("=")


def _key(version: int) -> bytes:
    keys = vault.keyring()
    if version not in keys:
        raise vault.VaultKeyUnavailable(f"vault key version {version} is not in VAULT_KEYS")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(keys[version])


def seal(endpoint_id: uuid.UUID, secret: str) -> bytes:
    version = vault.current_key_version()
    nonce = os.urandom(_NONCE)
    ciphertext = AESGCM(_key(version)).encrypt(nonce, secret.encode(), endpoint_id.bytes)
    return version.to_bytes(2, "big") + nonce + ciphertext


def open_sealed(endpoint_id: uuid.UUID, sealed: bytes) -> str:
    sealed = bytes(sealed)
    version = int.from_bytes(sealed[:2], "big")
    nonce, ciphertext = sealed[2 : 2 + _NONCE], sealed[2 + _NONCE :]
    return AESGCM(_key(version)).decrypt(nonce, ciphertext, endpoint_id.bytes).decode()
