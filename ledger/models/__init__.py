from ledger.models.acquirer import AcquirerCommand, CommandKind, CommandStatus
from ledger.models.api_keys import ApiKey, ApiKeyMode
from ledger.models.journal import Account, AccountKind, JournalEntry, JournalLine
from ledger.models.merchants import Merchant, MerchantStatus
from ledger.models.simulator import SimulatedOperation
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
    "AcquirerCommand",
    "ApiKey",
    "ApiKeyMode",
    "CaptureMethod",
    "CardToken",
    "CommandKind",
    "CommandStatus",
    "JournalEntry",
    "JournalLine",
    "Merchant",
    "MerchantStatus",
    "SimulatedOperation",
    "Transaction",
    "TransactionStatus",
    "TransactionType",
]
