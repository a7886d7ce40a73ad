from ledger.models.api_keys import ApiKey, ApiKeyMode
from ledger.models.journal import Account, AccountKind, JournalEntry, JournalLine
from ledger.models.merchants import Merchant, MerchantStatus
from ledger.models.transactions import (
    CaptureMethod,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from ledger.models.vault import CardToken

__all__ = [
    "Account",
    "AccountKind",
    "ApiKey",
    "ApiKeyMode",
    "CaptureMethod",
    "CardToken",
    "JournalEntry",
    "JournalLine",
    "Merchant",
    "MerchantStatus",
    "Transaction",
    "TransactionStatus",
    "TransactionType",
]
