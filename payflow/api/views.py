"""Merchant API views: validate, call one ledger service, shape the response."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ledger import ids
from ledger.exceptions import NotFound
from ledger.models import CardToken, Transaction, TransactionStatus, TransactionType
from ledger.selectors import merchant_balances
from ledger.services.payments import (
    CardInput,
    payment_cancel,
    payment_capture,
    payment_create,
    payment_update,
)
from ledger.services.payouts import payout_create
from ledger.services.personal_data import card_token_erased
from ledger.services.refunds import refund_create
from ledger.services.vault import card_token_lookup, card_tokenize
from payflow.api import schema
from payflow.api import serializers as s
from payflow.api.auth import request_livemode, request_merchant, request_scope
from payflow.api.errors import ApiError, error_body
from payflow.api.events import (
    EVENT_FILTER_PARAMETERS,
    EventListOut,
    EventOut,
    merchant_event,
    merchant_events,
)
from payflow.api.free_text import contains_card_number
from payflow.api.idempotency import idempotent
from payflow.api.pagination import created_filter, page_of, page_parameters, paginate

PAGE_PARAMETERS = ("limit", "starting_after", "ending_before")
LIST_FILTERS = ("status", "external_reference", "created[gte]", "created[lte]")


# Every merchant endpoint: refuses query parameters it does not take. ``query_parameters``
# lists the ones it takes (what its OpenAPI operation documents; tests/payflow/api/
# test_events_contract.py checks they agree); any other is a 400 naming it, as an unknown
# body field is, instead of an answer that silently ignored it (``?currency=EUR`` on a list
# would otherwise return every currency). A name that could be a card number never reaches
# here (``payflow.api.free_text`` refused it). A comment, not a docstring: drf-spectacular
# would show a docstring as every operation's description.
class ApiView(APIView):
    #: What ``GET`` takes; a write takes none (its parameters are the body's).
    query_parameters: tuple[str, ...] = ()

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        allowed = self.query_parameters if request.method == "GET" else ()
        unknown = sorted(set(request.query_params) - set(allowed))
        if unknown:
            # Repeated only when short and free of anything card-number shaped (the
            # permission checked the whole name; a cut one can still look like a PAN).
            name: str | None = unknown[0]
            if name is None or len(name) > 100 or contains_card_number(name):
                name = None
            takes = f"This takes {', '.join(allowed)}." if allowed else "This takes none."
            raise ApiError(
                400,
                "invalid_request_error",
                "parameter_unknown",
                f"Unknown query parameter{f' {name}' if name else ''}. {takes}",
                name,
            )


def _validated(serializer_class, request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


_VERSION = re.compile(r"[0-9]{1,9}")  # ASCII digits only: str.isdigit() accepts "³"


def _expected_version(request: Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip().removeprefix("W/").strip('"')
    if not _VERSION.fullmatch(value):
        raise ApiError(
            400,
            "invalid_request_error",
            "parameter_invalid",
            'If-Match must be a version, e.g. If-Match: "3".',
            "If-Match",
        )
    return int(value)


def _object_response(body: dict, code: int = status.HTTP_200_OK, **headers: str) -> Response:
    if "version" in body:
        headers["ETag"] = f'"{body["version"]}"'
    return Response(body, status=code, headers=headers)


def _missing(kind: str, public_id: str, param: str) -> ApiError:
    return ApiError(
        404, "invalid_request_error", "resource_missing", f"No such {kind}: '{public_id}'", param
    )


def _decode(kind: str, public_id: str, param: str):
    try:
        return ids.decode(kind, public_id)
    except NotFound as exc:
        # Not an id of ours: never repeated, it could be anything (a card number).
        raise ApiError(
            404,
            "invalid_request_error",
            "resource_missing",
            f"No such {kind}: that is not a {kind} id.",
            param,
        ) from exc


def _transaction(request: Request, kind: str, public_id: str, type_: str) -> Transaction:
    found = (
        Transaction.objects.select_related("card_token")
        .filter(pk=_decode(kind, public_id, "id"), type=type_, **request_scope(request))
        .first()
    )
    if found is None:
        raise _missing(kind, public_id, "id")
    return found


def _token(request: Request, public_id: str, param: str) -> CardToken:
    token = card_token_lookup(
        token_id=_decode("token", public_id, param),
        merchant_id=request_merchant(request).pk,
        livemode=request_livemode(request),
    )
    if token is None or card_token_erased(token):  # an erased cardholder's card is gone
        raise _missing("token", public_id, param)
    return token


def _card_input(card: dict) -> CardInput:
    return CardInput(
        number=card["number"],
        exp_month=card["exp_month"],
        exp_year=card["exp_year"],
        cvc=card.get("cvc"),
        holder_name=card.get("name", ""),
    )


class PingView(ApiView):
    """The trivial authenticated endpoint (the framework's ceiling in benchmarks)."""

    @extend_schema(
        operation_id="ping",
        summary="Check an API key",
        responses={200: s.PingOut, **schema.errors()},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "object": "ping",
                "merchant": ids.encode("merchant", request_merchant(request).pk),
                "livemode": request_livemode(request),
            }
        )


class TokenCreateView(ApiView):
    def report(self, request: Request, token: CardToken) -> Response:
        return _object_response(s.token_body(token), status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="tokens_create",
        summary="Tokenize a card",
        request=s.TokenCreateSerializer,
        parameters=[schema.IDEMPOTENCY_KEY],
        responses={201: s.TokenOut, **schema.errors(400, 403, 409)},
        examples=[schema.example("Card", {"card": schema.CARD_EXAMPLE}, request=True)],
    )
    @idempotent(links=("token", "insert"))
    def post(self, request: Request) -> Response:
        data = _validated(s.TokenCreateSerializer, request)
        card = data["card"]
        token = card_tokenize(
            **request_scope(request),
            number=card["number"],
            exp_month=card["exp_month"],
            exp_year=card["exp_year"],
            holder_name=card.get("name", ""),
        )
        return self.report(request, token)


class TokenDetailView(ApiView):
    @extend_schema(
        operation_id="tokens_retrieve",
        summary="Retrieve a token",
        parameters=[schema.path_id("token_id", "token")],
        responses={200: s.TokenOut, **schema.errors(404)},
    )
    def get(self, request: Request, token_id: str) -> Response:
        token = _token(request, token_id, "id")
        return _object_response(s.token_body(token))


def _filtered(request: Request, queryset):
    params = request.query_params
    if "status" in params:
        if params["status"] not in TransactionStatus.values:
            raise ApiError(
                400,
                "invalid_request_error",
                "parameter_invalid",
                f"status must be one of {', '.join(TransactionStatus.values)}.",
                "status",
            )
        queryset = queryset.filter(status=params["status"])
    if "external_reference" in params:
        queryset = queryset.filter(external_reference=params["external_reference"])
    return queryset.filter(**created_filter(params, "initiated_at"))


def _list(request: Request, type_: str, kind: str, render, **filters: Any) -> Response:
    queryset = Transaction.objects.select_related("card_token").filter(
        type=type_, **request_scope(request), **filters
    )
    return Response(paginate(request, _filtered(request, queryset), kind, render))


class PaymentsView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *LIST_FILTERS)

    @extend_schema(
        operation_id="payments_list",
        summary="List payments, newest first",
        parameters=[*page_parameters("payment"), *schema.FILTER_PARAMS],
        responses={200: page_of(s.PaymentOut, "PaymentListOut"), **schema.errors(400)},
    )
    def get(self, request: Request) -> Response:
        return _list(request, TransactionType.PAYMENT, "payment", s.payment_body)

    def report(self, request: Request, payment: Transaction) -> Response:
        """201 with the payment; 202 while the acquirer's answer is not known yet (the
        recovery job asks for it); the card error for a declined or failed payment."""
        if payment.status == TransactionStatus.FAILED:
            return Response(
                error_body(
                    "card_error",
                    "card_declined",
                    payment.failure_message or "The card was declined.",
                    decline_code=payment.decline_code,
                    payment=ids.encode("payment", payment.pk),
                ),
                status=status.HTTP_402_PAYMENT_REQUIRED,
            )
        code = (
            status.HTTP_202_ACCEPTED
            if payment.status == TransactionStatus.INITIATED
            else status.HTTP_201_CREATED
        )
        location = f"/v1/payments/{ids.encode('payment', payment.pk)}"
        return _object_response(s.payment_body(payment), code, Location=location)

    @extend_schema(
        operation_id="payments_create",
        summary="Create a payment (authorize, and capture unless capture is false)",
        request=s.PaymentCreateSerializer,
        parameters=[schema.IDEMPOTENCY_KEY],
        responses={
            201: s.PaymentOut,
            202: schema.PAYMENT_PENDING,
            **schema.errors(400, 402, 403, 404, 409, 422),
        },
        examples=schema.PAYMENT_CREATE_EXAMPLES,
    )
    @idempotent(links=("payment", "insert"), complete_in_transaction=True)
    def post(self, request: Request) -> Response:
        data = _validated(s.PaymentCreateSerializer, request)
        token = _token(request, data["token"], "token") if "token" in data else None
        payment = payment_create(
            **request_scope(request),
            amount=data["amount"],
            currency=data["currency"],
            token=token,
            card=_card_input(data["card"]) if "card" in data else None,
            cvc=data.get("cvc"),
            capture=data["capture"],
            external_reference=data.get("external_reference"),
            metadata=data.get("metadata"),
        )
        return self.report(request, payment)


class PaymentDetailView(ApiView):
    @extend_schema(
        operation_id="payments_retrieve",
        summary="Retrieve a payment",
        parameters=[schema.path_id("payment_id", "payment")],
        responses={200: s.PaymentOut, **schema.errors(404)},
        examples=[schema.example("Payment", schema.PAYMENT_EXAMPLE)],
    )
    def get(self, request: Request, payment_id: str) -> Response:
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        return _object_response(s.payment_body(payment))

    def report(self, request: Request, payment: Transaction) -> Response:
        return _object_response(s.payment_body(payment))

    @extend_schema(
        operation_id="payments_update",
        summary='Update a payment\'s metadata (a key set to "" is removed)',
        request=s.PaymentUpdateSerializer,
        parameters=schema.PAYMENT_WRITE_PARAMETERS,
        responses={200: s.PaymentOut, **schema.errors(400, 404, 409)},
        examples=[schema.example("Metadata", {"metadata": {"order": "A-1042"}}, request=True)],
    )
    @idempotent(links=("payment", "update"))
    def post(self, request: Request, payment_id: str) -> Response:
        data = _validated(s.PaymentUpdateSerializer, request)
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        payment = payment_update(
            payment=payment,
            metadata=data.get("metadata", {}),
            expected_version=_expected_version(request),
        )
        return self.report(request, payment)


class PaymentCaptureView(ApiView):
    def report(self, request: Request, payment: Transaction) -> Response:
        return _object_response(s.payment_body(payment))

    @extend_schema(
        operation_id="payments_capture",
        summary="Capture an authorized payment (all or part)",
        request=s.CaptureSerializer,
        parameters=schema.PAYMENT_WRITE_PARAMETERS,
        responses={200: s.PaymentOut, **schema.errors(400, 404, 409, 422)},
        examples=[schema.example("Partial capture", {"amount": 1500}, request=True)],
    )
    @idempotent(links=("payment", "update"))
    def post(self, request: Request, payment_id: str) -> Response:
        data = _validated(s.CaptureSerializer, request)
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        payment = payment_capture(
            payment=payment, amount=data.get("amount"), expected_version=_expected_version(request)
        )
        return self.report(request, payment)


class PaymentCancelView(ApiView):
    def report(self, request: Request, payment: Transaction) -> Response:
        return _object_response(s.payment_body(payment))

    @extend_schema(
        operation_id="payments_cancel",
        summary="Cancel (void) an authorized payment",
        request=s.EmptySerializer,
        parameters=schema.PAYMENT_WRITE_PARAMETERS,
        responses={200: s.PaymentOut, **schema.errors(400, 404, 409, 422)},
    )
    @idempotent(links=("payment", "update"))
    def post(self, request: Request, payment_id: str) -> Response:
        _validated(s.EmptySerializer, request)
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        payment = payment_cancel(payment=payment, expected_version=_expected_version(request))
        return self.report(request, payment)


class PaymentRefundsView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *LIST_FILTERS)

    @extend_schema(
        operation_id="payment_refunds_list",
        summary="List a payment's refunds, newest first",
        parameters=[
            schema.path_id("payment_id", "payment"),
            *page_parameters("refund"),
            *schema.FILTER_PARAMS,
        ],
        responses={200: page_of(s.RefundOut, "RefundListOut"), **schema.errors(400, 404)},
    )
    def get(self, request: Request, payment_id: str) -> Response:
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        return _list(request, TransactionType.REFUND, "refund", s.refund_body, parent_id=payment.pk)

    def report(self, request: Request, refund: Transaction) -> Response:
        return _object_response(
            s.refund_body(refund),
            status.HTTP_201_CREATED,
            Location=f"/v1/refunds/{ids.encode('refund', refund.pk)}",
        )

    @extend_schema(
        operation_id="refunds_create",
        summary="Refund a payment (all or part)",
        request=s.RefundCreateSerializer,
        parameters=schema.PAYMENT_WRITE_PARAMETERS,
        responses={201: s.RefundOut, **schema.errors(400, 404, 409, 422)},
        examples=[
            schema.example(
                "Partial refund", {"amount": 1000, "reason": "requested_by_customer"}, request=True
            )
        ],
    )
    @idempotent(links=("refund", "insert"))
    def post(self, request: Request, payment_id: str) -> Response:
        data = _validated(s.RefundCreateSerializer, request)
        payment = _transaction(request, "payment", payment_id, TransactionType.PAYMENT)
        refund = refund_create(
            payment=payment,
            amount=data.get("amount"),
            reason=data.get("reason", ""),
            metadata=data.get("metadata"),
            expected_version=_expected_version(request),
        )
        return self.report(request, refund)


class RefundsView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *LIST_FILTERS, "payment")

    @extend_schema(
        operation_id="refunds_list",
        summary="List refunds, newest first",
        parameters=[*page_parameters("refund"), *schema.FILTER_PARAMS, schema.PAYMENT_FILTER],
        responses={200: page_of(s.RefundOut, "RefundListOut"), **schema.errors(400, 404)},
    )
    def get(self, request: Request) -> Response:
        filters = {}
        if "payment" in request.query_params:
            filters["parent_id"] = _decode("payment", request.query_params["payment"], "payment")
        return _list(request, TransactionType.REFUND, "refund", s.refund_body, **filters)


class RefundDetailView(ApiView):
    @extend_schema(
        operation_id="refunds_retrieve",
        summary="Retrieve a refund",
        parameters=[schema.path_id("refund_id", "refund")],
        responses={200: s.RefundOut, **schema.errors(404)},
    )
    def get(self, request: Request, refund_id: str) -> Response:
        refund = _transaction(request, "refund", refund_id, TransactionType.REFUND)
        return _object_response(s.refund_body(refund))


class BalanceView(ApiView):
    @extend_schema(
        operation_id="balance_retrieve",
        summary="Pending, available and receivable balances per currency",
        responses={200: s.BalanceOut, **schema.errors()},
    )
    def get(self, request: Request) -> Response:
        livemode = request_livemode(request)
        balances = merchant_balances(request_merchant(request), livemode=livemode)

        def amounts(name):
            return [
                {"amount": values[name], "currency": currency}
                for currency, values in sorted(balances.items())
            ]

        return Response(
            {
                "object": "balance",
                "livemode": livemode,
                "available": amounts("available"),
                "pending": amounts("pending"),
                "receivable": amounts("receivable"),
            }
        )


class PayoutsView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *LIST_FILTERS)

    @extend_schema(
        operation_id="payouts_list",
        summary="List payouts, newest first",
        parameters=[*page_parameters("payout"), *schema.FILTER_PARAMS],
        responses={200: page_of(s.PayoutOut, "PayoutListOut"), **schema.errors(400)},
    )
    def get(self, request: Request) -> Response:
        return _list(request, TransactionType.PAYOUT, "payout", s.payout_body)

    def report(self, request: Request, payout: Transaction) -> Response:
        return _object_response(
            s.payout_body(payout),
            status.HTTP_201_CREATED,
            Location=f"/v1/payouts/{ids.encode('payout', payout.pk)}",
        )

    @extend_schema(
        operation_id="payouts_create",
        summary="Pay out part of the available balance",
        request=s.PayoutCreateSerializer,
        parameters=[schema.IDEMPOTENCY_KEY],
        responses={201: s.PayoutOut, **schema.errors(400, 403, 409, 422)},
        examples=[schema.example("Payout", {"amount": 5000, "currency": "EUR"}, request=True)],
    )
    @idempotent(links=("payout", "insert"))
    def post(self, request: Request) -> Response:
        data = _validated(s.PayoutCreateSerializer, request)
        payout = payout_create(
            **request_scope(request),
            amount=data["amount"],
            currency=data["currency"],
            external_reference=data.get("external_reference"),
            metadata=data.get("metadata"),
        )
        return self.report(request, payout)


class PayoutDetailView(ApiView):
    @extend_schema(
        operation_id="payouts_retrieve",
        summary="Retrieve a payout",
        parameters=[schema.path_id("payout_id", "payout")],
        responses={200: s.PayoutOut, **schema.errors(404)},
    )
    def get(self, request: Request, payout_id: str) -> Response:
        payout = _transaction(request, "payout", payout_id, TransactionType.PAYOUT)
        return _object_response(s.payout_body(payout))


class EventsView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *EVENT_FILTER_PARAMETERS)

    @extend_schema(
        operation_id="events_list",
        summary="This merchant's events, newest first",
        parameters=[*page_parameters("event"), *schema.EVENT_FILTERS],
        responses={200: EventListOut, **schema.errors(400)},
    )
    def get(self, request: Request) -> Response:
        return Response(merchant_events(request))


class EventDetailView(ApiView):
    @extend_schema(
        operation_id="events_retrieve",
        summary="Retrieve an event",
        parameters=[schema.path_id("event_id", "event")],
        responses={200: EventOut, **schema.errors(404)},
    )
    def get(self, request: Request, event_id: str) -> Response:
        return Response(merchant_event(request, event_id))


class ChargebacksView(ApiView):
    query_parameters = (*PAGE_PARAMETERS, *LIST_FILTERS, "payment")

    @extend_schema(
        operation_id="chargebacks_list",
        summary="List chargebacks, newest first",
        parameters=[*page_parameters("chargeback"), *schema.FILTER_PARAMS, schema.PAYMENT_FILTER],
        responses={200: page_of(s.ChargebackOut, "ChargebackListOut"), **schema.errors(400, 404)},
    )
    def get(self, request: Request) -> Response:
        filters = {}
        if "payment" in request.query_params:
            filters["parent_id"] = _decode("payment", request.query_params["payment"], "payment")
        return _list(
            request, TransactionType.CHARGEBACK, "chargeback", s.chargeback_body, **filters
        )


class ChargebackDetailView(ApiView):
    @extend_schema(
        operation_id="chargebacks_retrieve",
        summary="Retrieve a chargeback",
        parameters=[schema.path_id("chargeback_id", "chargeback")],
        responses={200: s.ChargebackOut, **schema.errors(404)},
    )
    def get(self, request: Request, chargeback_id: str) -> Response:
        chargeback = _transaction(request, "chargeback", chargeback_id, TransactionType.CHARGEBACK)
        return _object_response(s.chargeback_body(chargeback))
