"""Double-entry postings. Called by the money services inside their transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from ledger.events import EventType
from ledger.exceptions import InsufficientBalance
from ledger.models import Account, AccountKind, JournalEntry, JournalLine, Merchant, Transaction
from ledger.models.journal import TRACKED_KINDS
from ledger.signals import insert_audited
from payflow.platform import caches, db
from payflow.platform.guards import sanctioned_writes


class UnbalancedEntry(ValueError):
    """A journal entry whose lines do not sum to zero per currency (a programming error)."""


#: Accounts by (owner, kind, currency, livemode): an account's identity never changes
#: and accounts are never deleted, so a process looks each one up once. Only what the
#: services use is read from a cached account (id, kind, currency, mode), never its
#: balance (that moves by ``UPDATE``, see ``_apply_to_tracked_balance``).
_ACCOUNTS = caches.ProcessCache("accounts", ttl=None)


def account_get_or_create(
    *,
    merchant: Merchant | None = None,
    merchant_id: Any = None,
    kind: str,
    currency: str,
    livemode: bool,
) -> Account:
    """The account, created on first use. The unique constraint on (owner, livemode, kind,
    currency) makes creation race-free, platform accounts included. ``merchant_id`` may be
    given instead of ``merchant`` (nothing is read for it)."""
    if merchant is not None:
        merchant_id = merchant.pk
    lookup: dict[str, Any] = {
        "owner": Account.owner_of(merchant_id),
        "kind": kind,
        "currency": currency,
        "livemode": livemode,
    }
    key = (lookup["owner"], kind, currency, livemode)
    account = _ACCOUNTS.get(key)
    if account is not None:
        return account
    account = Account.objects.filter(**lookup).first()
    if account is None:
        try:
            # A savepoint: a concurrent creator's duplicate-key error must not break our
            # transaction.
            with transaction.atomic():
                account = Account.objects.create(merchant_id=merchant_id, **lookup)
        except IntegrityError:
            account = Account.objects.get(**lookup)
    _ACCOUNTS.put_after_commit(key, account)  # a rollback of its creation caches nothing
    return account


def _check_balanced(
    lines: Sequence[tuple[Account, int]], transaction_obj: Transaction | None
) -> bool:
    """Refuses an entry that does not sum to zero per currency, or that mixes test and live
    accounts (or posts to accounts of another mode than its transaction's). Returns the
    entry's mode."""
    if not lines:
        raise UnbalancedEntry("a journal entry needs lines")
    modes = {account.livemode for account, _amount in lines}
    if transaction_obj is not None:
        modes.add(transaction_obj.livemode)
    if len(modes) != 1:
        raise UnbalancedEntry("a journal entry cannot mix test-mode and live-mode accounts")
    totals: dict[str, int] = defaultdict(int)
    for account, amount in lines:
        if amount == 0:
            raise UnbalancedEntry("a journal line cannot be zero")
        totals[account.currency] += amount
    unbalanced = {currency: total for currency, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedEntry(f"journal entry does not balance: {unbalanced}")
    return modes.pop()


def _apply_to_tracked_balance(account: Account, amount: int) -> None:
    """Move a tracked account's running balance by one line, in one statement.

    Balances are credit-normal (a credit, i.e. a negative line, increases them). The
    ``WHERE`` refuses a move that would take the balance below zero: this is where payouts
    and refunds of settled payments are checked against the available balance, without
    check-then-act (the CHECK constraint is the backstop). The UPDATE takes the account's
    row lock, step 2 of ``payflow.platform.db``'s lock order.
    """
    updated = Account.objects.filter(pk=account.pk, balance__gte=amount).update(
        balance=F("balance") - amount, version=F("version") + 1
    )
    if not updated:
        balance = tracked_balance_available(account)
        if balance is None:
            _stale_accounts()
        raise InsufficientBalance(
            f"the {account.currency} available balance ({balance}) does not cover {amount}"
        )


def tracked_balance_available(account: Account) -> int | None:
    """The running balance as committed, or None if the account does not exist."""
    return Account.objects.values_list("balance", flat=True).filter(pk=account.pk).first()


def tracked_balance_locked(account: Account) -> int:
    """The running balance, with the account's row lock held until the transaction ends
    (for a decision that depends on it, e.g. how much of a chargeback it covers)."""
    return Account.objects.select_for_update().values_list("balance", flat=True).get(pk=account.pk)


def journal_post(
    *,
    kind: str,
    lines: Sequence[tuple[Account, int]],
    merchant: Merchant | None = None,
    merchant_id: Any = None,
    transaction_obj: Transaction | None = None,
    description: str = "",
) -> JournalEntry:
    """Post one balanced entry: insert the entry and its lines, move tracked balances.

    Must run inside the caller's ``payflow.platform.db.atomic`` transaction. Lines are signed
    (positive debit, negative credit) and must sum to zero per currency; every account
    (and the transaction) must be of one mode, the entry's. Tracked accounts
    are updated first, in ascending id order (``payflow.platform.db``'s lock order), so two
    postings never wait on each other in a cycle. Sends ``journal_entry.posted``.
    """
    livemode = _check_balanced(lines, transaction_obj)
    # Tracked balances first, in ascending id, then the rows that reference them
    # (payflow.platform.db's lock order, step 2).
    for account, amount in sorted(lines, key=lambda line: line[0].pk):
        if account.kind in TRACKED_KINDS:
            _apply_to_tracked_balance(account, amount)
    entry = insert_audited(
        JournalEntry(
            kind=kind,
            merchant_id=merchant.pk if merchant is not None else merchant_id,
            livemode=livemode,
            transaction=transaction_obj,
            description=description,
        ),
        event_type=EventType.JOURNAL_ENTRY_POSTED,
        extra_values={"lines": journal_lines_values(lines)},
    )
    try:
        with sanctioned_writes():  # no savepoint: a failure ends the whole transaction
            JournalLine.objects.bulk_create(
                [
                    JournalLine(
                        entry=entry, account=account, amount=amount, currency=account.currency
                    )
                    for account, amount in lines
                ]
            )
    except IntegrityError as exc:
        if db.mysql_errno(exc) == MISSING_PARENT or "FOREIGN KEY" in str(exc):
            _stale_accounts()
        raise
    return entry


#: MariaDB's "Cannot add or update a child row: a foreign key constraint fails".
MISSING_PARENT = 1452


def _stale_accounts() -> None:
    """A cached account no longer exists (the database was restored to an earlier point,
    or emptied under a running process): forget every cached account and run the
    transaction again (``payflow.platform.db.StaleCache``)."""
    _ACCOUNTS.clear()
    raise db.StaleCache("a cached account no longer exists")


def journal_lines_values(lines: Sequence[tuple[Account, int]]) -> list[dict[str, Any]]:
    """A journal entry's lines as its audit entry records them (reconciliation compares
    the stored lines with these)."""
    return [
        {
            "account": account.pk,
            "kind": account.kind,
            "amount": amount,
            "currency": account.currency,
        }
        for account, amount in lines
    ]


def merchant_account(
    merchant: Merchant, kind: AccountKind, currency: str, *, livemode: bool
) -> Account:
    """The merchant's account of ``kind`` in one mode and currency."""
    return account_get_or_create(merchant=merchant, kind=kind, currency=currency, livemode=livemode)


def platform_account(kind: AccountKind, currency: str, *, livemode: bool) -> Account:
    """The platform's account of ``kind`` in one mode and currency (test money clears
    through test-mode platform accounts, never through live ones)."""
    return account_get_or_create(merchant=None, kind=kind, currency=currency, livemode=livemode)


def merchant_account_of(txn: Any, kind: AccountKind) -> Account:
    """The account of ``kind`` of the transaction's merchant, in its mode and currency."""
    return account_get_or_create(
        merchant_id=txn.merchant_id, kind=kind, currency=txn.currency, livemode=txn.livemode
    )


def platform_account_of(txn: Any, kind: AccountKind) -> Account:
    """The platform's account of ``kind`` the transaction clears through (its mode and
    currency)."""
    return platform_account(kind, txn.currency, livemode=txn.livemode)
