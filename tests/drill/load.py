"""The drill's load: payments, captures, refunds and payouts through the HTTP API, as a
careful merchant sends them, with every request and answer recorded.

Each operation has its own Idempotency-Key and a unique amount (``10_000 + n`` for a
payment, ``1 + n`` for a refund or payout), so the checker finds its effect in the ledger
by amount and sees a duplicate as two rows. A request that got no answer, a 5xx, a 409
(the key is still being worked on) or a 429 is sent again with the same key and body,
after a short pause, until an answer or the operation's deadline: a definite answer (2xx,
or a 4xx that is not one of those) ends the operation. Bounded by count and time; loopback
only.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}
RETRYABLE = {429, 500, 502, 503, 504}  # and 409 request_in_progress (the key is busy)
KINDS = ("payment", "authorize_capture", "refund", "payout")
WEIGHTS = (4, 2, 2, 1)


@dataclass
class Attempt:
    at: float
    status: int | None  # None: no answer (connection refused, reset, timed out)
    error: str = ""


@dataclass
class Operation:
    op: int
    kind: str
    merchant: int
    amount: int
    key: str
    started: float
    ended: float = 0.0
    outcome: str = ""  # ok (2xx), refused (other 4xx), unanswered (deadline, no answer)
    status: int | None = None
    object_id: str = ""
    object_status: str = ""
    payment_id: str = ""  # a refund's, or the capture step's payment
    attempts: list[Attempt] = field(default_factory=list)


class Load:
    """``threads`` clients until ``stop()`` or ``max_operations``; ``history`` is JSONL."""

    def __init__(
        self,
        url: str,
        keys: list[str],
        history: Path,
        *,
        threads: int = 4,
        max_operations: int = 100_000,
        deadline_seconds: float = 45.0,
        request_timeout: float = 10.0,
    ) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.keys = keys
        self.history_path = history
        self.threads = threads
        self.max_operations = max_operations
        self.deadline_seconds = deadline_seconds
        self.request_timeout = request_timeout
        self._counter = itertools.count(1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        # Captured payments a refund may target: (merchant, payment id, amount left).
        self._refundable: list[tuple[int, str, int]] = []
        self.operations: list[Operation] = []

    # --- running ----------------------------------------------------------------------
    def start(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self, timeout: float = 120) -> None:
        """No new operation; those under way finish (answer or deadline)."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout)

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        while not self._stop.is_set():
            number = next(self._counter)
            if number > self.max_operations:
                return
            kind = rng.choices(KINDS, WEIGHTS)[0]
            merchant = rng.randrange(len(self.keys))
            operation = self._operate(number, kind, merchant)
            with self._lock:
                self.operations.append(operation)
                with self.history_path.open("a") as history:
                    history.write(json.dumps(asdict(operation)) + "\n")

    # --- one operation ----------------------------------------------------------------
    def _operate(self, number: int, kind: str, merchant: int) -> Operation:
        started = time.time()
        amount = 10_000 + number if kind in ("payment", "authorize_capture") else 1 + number
        operation = Operation(number, kind, merchant, amount, str(uuid.uuid4()), started)
        if kind == "refund":
            target = self._take_refundable(merchant, amount)
            if target is None:  # nothing to refund yet: a payment instead
                operation.kind, operation.amount = "payment", 10_000 + number
                kind = "payment"
            else:
                operation.payment_id = target
        body: dict[str, Any]
        if kind in ("payment", "authorize_capture"):
            body = {"amount": operation.amount, "currency": "EUR", "card": CARD}
            body["capture"] = kind == "payment"
            path = "/v1/payments"
        elif kind == "refund":
            body, path = {"amount": amount}, f"/v1/payments/{operation.payment_id}/refunds"
        else:
            body, path = {"amount": amount, "currency": "EUR"}, "/v1/payouts"
        answer = self._until_answered(operation, path, body, operation.key)
        if kind == "authorize_capture" and operation.outcome == "ok":
            # The second step, with its own key: captured in full.
            operation.payment_id = answer.get("id", "")
            answer = self._until_answered(
                operation, f"/v1/payments/{operation.payment_id}/capture", {}, operation.key + "c"
            )
        operation.ended = time.time()
        if operation.outcome == "ok":
            operation.object_id = answer.get("id", "")
            operation.object_status = answer.get("status", "")
            if answer.get("object") == "payment" and answer.get("status") == "captured":
                with self._lock:
                    self._refundable.append((merchant, answer["id"], answer["amount"]))
        return operation

    def _take_refundable(self, merchant: int, amount: int) -> str | None:
        with self._lock:
            for position, (owner, payment, left) in enumerate(self._refundable):
                if owner == merchant and left >= amount:
                    if left - amount > 0:
                        self._refundable[position] = (owner, payment, left - amount)
                    else:
                        self._refundable.pop(position)
                    return payment
        return None

    def _until_answered(self, operation: Operation, path: str, body: dict, key: str) -> dict:
        deadline = operation.started + self.deadline_seconds
        pause = 0.2
        while True:
            status, answer, error = self._request(path, body, key, operation.merchant)
            operation.attempts.append(Attempt(time.time(), status, error))
            operation.status = status
            busy = status == 409 and error == "request_in_progress"
            if status is not None and status not in RETRYABLE and not busy:
                operation.outcome = "ok" if status < 300 else "refused"
                return answer
            if time.time() + pause > deadline:
                operation.outcome = "unanswered"
                return {}
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _request(self, path: str, body: dict, key: str, merchant: int):
        credentials = base64.b64encode(f"{self.keys[merchant]}:".encode()).decode()
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.request_timeout)
        try:
            connection.request(
                "POST",
                path,
                body=json.dumps(body),
                headers={
                    "Authorization": f"Basic {credentials}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                    "X-Forwarded-Proto": "https",
                },
            )
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return None, {}, type(exc).__name__
        finally:
            connection.close()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        error = answer.get("error", {}).get("code", "") if isinstance(answer, dict) else ""
        return response.status, answer if isinstance(answer, dict) else {}, error
