"""The event types: every ``event_type`` the ledger signals, and every event the outbox
publishes, listed once.

A ledger service names the change it signals with a member of ``EventType``
(``insert_audited(..., event_type=EventType.PAYMENT_CAPTURED)``); a member is its name as a
string, so the audit row, the outbox row and the Kafka envelope carry exactly that string.
Each member also says which aggregate it is about, on which topic it is published (``None``:
recorded in the audit trail only, reaching Kafka just inside ``audit.entry_recorded``) and
which schema in ``outbox/schemas/`` its payload follows.

The two ``audit.*`` event types are the audit sequencer's (each sequenced entry and each
signed checkpoint, published in log order, not through the outbox); they are listed here
too so that one list holds everything a consumer can receive. The ledger imports nothing
of the outbox or the audit for it: these are names.

``outbox/schemas/*.json`` and ``docs/events.md`` are checked against this list
(``tests/outbox/test_registries.py``, which also regenerates them).
"""

from __future__ import annotations

from enum import StrEnum


class Topic(StrEnum):
    """Published topic names (before ``KAFKA_TOPIC_PREFIX``); consumers subscribe to them."""

    TRANSACTIONS_INITIATED = "transactions.initiated"
    TRANSACTIONS_COMPLETED = "transactions.completed"
    TRANSACTIONS_FAILED = "transactions.failed"
    AUDIT_EVENTS = "audit.events"
    AUDIT_CHECKPOINTS = "audit.checkpoints"


_INITIATED = Topic.TRANSACTIONS_INITIATED
_COMPLETED = Topic.TRANSACTIONS_COMPLETED
_FAILED = Topic.TRANSACTIONS_FAILED
_TRANSACTION = "transaction.json"


class EventType(StrEnum):
    """``name`` (the value), ``aggregate``, ``topic``, ``schema`` and ``when`` (docs)."""

    aggregate: str
    topic: Topic | None
    schema: str | None
    when: str

    def __new__(
        cls,
        name: str,
        aggregate: str = "",
        topic: Topic | None = None,
        schema: str | None = None,
        when: str = "",
    ) -> EventType:
        # Called once per member, with its tuple; ``EventType("payment.created")`` looks a
        # member up by name and never comes here (the defaults only tell the type checker).
        member = str.__new__(cls, name)
        member._value_ = name
        member.aggregate = aggregate
        member.topic = topic
        member.schema = schema
        member.when = when
        return member

    # payments
    PAYMENT_CREATED = (
        "payment.created",
        "payment",
        _INITIATED,
        _TRANSACTION,
        "a payment was recorded, before the acquirer is asked",
    )
    PAYMENT_AUTHORIZED = (
        "payment.authorized",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "the acquirer approved; funds are held",
    )
    PAYMENT_FAILED = (
        "payment.failed",
        "payment",
        _FAILED,
        _TRANSACTION,
        "declined or not processed; `payload.decline_code` says why (`acquirer_unavailable`:"
        " the acquirer never received it and it was reversed; no money was taken)",
    )
    PAYMENT_CAPTURED = (
        "payment.captured",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "captured (all or part: `captured_amount`)",
    )
    PAYMENT_UPDATED = (
        "payment.updated",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "the merchant changed its `metadata` (`POST /v1/payments/{id}`); the status is unchanged",
    )
    PAYMENT_CANCELLED = (
        "payment.cancelled",
        "payment",
        _FAILED,
        _TRANSACTION,
        "the authorization was voided",
    )
    PAYMENT_SETTLED = (
        "payment.settled",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "the net captured amount became available to the merchant",
    )
    PAYMENT_PARTIALLY_REFUNDED = (
        "payment.partially_refunded",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "a refund that leaves part of the capture (`refunded_amount`)",
    )
    PAYMENT_REFUNDED = (
        "payment.refunded",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "refunds and chargebacks now equal the capture (`status` refunded)",
    )
    PAYMENT_CHARGED_BACK = (
        "payment.charged_back",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "a chargeback was booked against it (`charged_back_amount`)",
    )
    PAYMENT_REFUND_FAILED = (
        "payment.refund_failed",
        "payment",
        _COMPLETED,
        _TRANSACTION,
        "the acquirer refused a refund of it: `refunded_amount` is back down (and a fully"
        " refunded payment back to `captured` or `settled`)",
    )
    # refunds, chargebacks, payouts
    REFUND_CREATED = (
        "refund.created",
        "refund",
        _INITIATED,
        _TRANSACTION,
        "a refund was recorded, `status` pending: its amount is reserved on the payment and"
        " booked (`parent` is the payment)",
    )
    REFUND_SUCCEEDED = (
        "refund.succeeded",
        "refund",
        _COMPLETED,
        _TRANSACTION,
        "the acquirer confirmed the refund (`status` refunded)",
    )
    REFUND_FAILED = (
        "refund.failed",
        "refund",
        _FAILED,
        _TRANSACTION,
        "the acquirer refused the refund (`decline_code`); the money went back to the"
        " merchant's balance",
    )
    CHARGEBACK_CREATED = (
        "chargeback.created",
        "chargeback",
        _INITIATED,
        _TRANSACTION,
        "a chargeback was recorded (`parent` is the payment)",
    )
    CHARGEBACK_SETTLED = (
        "chargeback.settled",
        "chargeback",
        _COMPLETED,
        _TRANSACTION,
        "the chargeback was booked",
    )
    PAYOUT_CREATED = (
        "payout.created",
        "payout",
        _INITIATED,
        _TRANSACTION,
        "a payout was recorded",
    )
    PAYOUT_PENDING = (
        "payout.pending",
        "payout",
        _COMPLETED,
        _TRANSACTION,
        "the payout left the available balance and is in transit",
    )
    PAYOUT_PAID = (
        "payout.paid",
        "payout",
        _COMPLETED,
        _TRANSACTION,
        "the payout reached the merchant's bank",
    )
    # recorded in the audit trail only
    MERCHANT_CREATED = ("merchant.created", "merchant", None, None, "a merchant was created")
    MERCHANT_SUSPENDED = (
        "merchant.suspended",
        "merchant",
        None,
        None,
        "the merchant was suspended: no new payments, captures or payouts",
    )
    MERCHANT_REACTIVATED = (
        "merchant.reactivated",
        "merchant",
        None,
        None,
        "a suspended merchant was reactivated",
    )
    MERCHANT_LEGAL_HOLD_PLACED = (
        "merchant.legal_hold_placed",
        "merchant",
        None,
        None,
        "a legal hold keeps the merchant's audit rows past retention",
    )
    MERCHANT_LEGAL_HOLD_RELEASED = (
        "merchant.legal_hold_released",
        "merchant",
        None,
        None,
        "the merchant's legal hold was released",
    )
    API_KEY_CREATED = ("api_key.created", "api_key", None, None, "an API key was issued")
    API_KEY_REVOKED = ("api_key.revoked", "api_key", None, None, "an API key was revoked")
    CARD_TOKEN_CREATED = (
        "card_token.created",
        "card_token",
        None,
        None,
        "a card was tokenized (never the PAN or CVC: brand, last 4, expiry, fingerprint)",
    )
    CARD_TOKEN_REENCRYPTED = (
        "card_token.reencrypted",
        "card_token",
        None,
        None,
        "a token was sealed again under the current vault key",
    )
    CARD_TOKEN_ERASED = (
        "card_token.erased",
        "card_token",
        None,
        None,
        "the cardholder was erased: the vault ciphertext and fingerprint are gone",
    )
    TRANSACTION_PERSONAL_DATA_ERASED = (
        "transaction.personal_data_erased",
        "transaction",
        None,
        None,
        "the cardholder was erased: the transaction's free texts (`metadata`, `reason`) were"
        " emptied; recorded in the audit trail only, not published",
    )
    VAULT_KEY_REGISTERED = (
        "vault_key.registered",
        "vault_key",
        None,
        None,
        "a vault key version was seen for the first time (its check value, never the key)",
    )
    JOURNAL_ENTRY_POSTED = (
        "journal_entry.posted",
        "journal_entry",
        None,
        None,
        "a balanced journal entry was posted",
    )
    ACCOUNT_MERGED = (
        "account.merged",
        "account",
        None,
        None,
        "a duplicate platform account was merged into the oldest (migration `ledger.0002`)",
    )
    ACQUIRER_COMMAND_CREATED = (
        "acquirer_command.created",
        "acquirer_command",
        None,
        None,
        "a capture, void or refund PayFlow owes the acquirer was booked",
    )
    ACQUIRER_COMMAND_SUCCEEDED = (
        "acquirer_command.succeeded",
        "acquirer_command",
        None,
        None,
        "the acquirer confirmed the command",
    )
    ACQUIRER_COMMAND_FAILED = (
        "acquirer_command.failed",
        "acquirer_command",
        None,
        None,
        "the acquirer refused the command",
    )
    # published by the audit sequencer (audit/sequencer.py), in log order, not by the outbox
    AUDIT_ENTRY_RECORDED = (
        "audit.entry_recorded",
        "audit_log",
        Topic.AUDIT_EVENTS,
        "audit_entry.json",
        "an entry was sequenced into the audit log: `{index, prev_hash, hash, body, entry}`"
        " (`body` the canonical bytes in base64, `docs/audit-formats.md`), keyed by the log's"
        " origin, header `log_index`",
    )
    AUDIT_CHECKPOINT_SIGNED = (
        "audit.checkpoint_signed",
        "audit_log",
        Topic.AUDIT_CHECKPOINTS,
        None,
        "a checkpoint was signed: the message is the signed note (C2SP tlog-checkpoint,"
        " `docs/audit-formats.md` §3), header `tree_size`",
    )

    @classmethod
    def created(cls, transaction_type: str) -> EventType:
        """``<type>.created`` of a transaction type; ``ValueError`` if it is not listed."""
        return cls(f"{transaction_type}.created")

    @classmethod
    def acquirer_command(cls, status: str) -> EventType:
        """``acquirer_command.<status>``; ``ValueError`` if it is not listed."""
        return cls(f"acquirer_command.{status}")


#: The event types a merchant receives (``GET /v1/events``, webhooks): every published
#: change of a transaction.
MERCHANT_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(
        member.value
        for member in EventType
        if member.topic is not None
        and member.aggregate in {"payment", "refund", "chargeback", "payout"}
    )
)
