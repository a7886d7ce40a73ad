"""Domain errors of the ledger. The API maps each to one HTTP status and error code."""

from __future__ import annotations


class LedgerError(Exception):
    """Base class. ``code`` is the stable machine-readable error code."""

    code = "ledger_error"
    param: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


class InvalidRequest(LedgerError):
    code = "invalid_request"


class InvalidAmount(InvalidRequest):
    code = "invalid_amount"
    param = "amount"


class UnsupportedCurrency(InvalidRequest):
    code = "unsupported_currency"
    param = "currency"


class InvalidCard(InvalidRequest):
    """The card data is malformed: Luhn, length, brand, expiry."""

    code = "invalid_card"


class InvalidStateTransition(LedgerError):
    code = "invalid_state_transition"


class MerchantInactive(LedgerError):
    code = "merchant_inactive"


class LiveModeUnavailable(LedgerError):
    """A live-mode request this platform cannot serve (no live acquirer configured)."""

    code = "livemode_unavailable"


class AmountExceedsRemaining(LedgerError):
    code = "amount_exceeds_remaining"
    param = "amount"


class InsufficientBalance(LedgerError):
    code = "insufficient_balance"
    param = "amount"


class ConcurrentUpdate(LedgerError):
    """A compare-and-set found another version: someone else changed the object first."""

    code = "concurrent_update"

    def __init__(self, message: str, *, current_version: int | None) -> None:
        super().__init__(message)
        self.current_version = current_version


class VaultError(LedgerError):
    """Decryption failed: the ciphertext, its key version or its token id was altered."""

    code = "vault_error"


class NotFound(LedgerError):
    """The object does not exist for this merchant (another merchant's id looks the same)."""

    code = "resource_missing"


class VaultKeyUnavailable(VaultError):
    """A card token is sealed under a key version that is not in the keyring (VAULT_KEYS)."""
