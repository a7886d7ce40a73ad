"""The accepted currencies' exponents, pinned: they come from the ``iso4217`` package now,
and an exponent that changed would reinterpret every stored amount in that currency."""

import iso4217
import pytest

from ledger.currencies import (
    ACCEPTED_CURRENCIES,
    EXPONENTS,
    from_major,
    normalize_currency,
    to_major,
)
from ledger.exceptions import InvalidAmount, UnsupportedCurrency

#: The hand-written table the package replaced (ledger/currencies.py before issue #20).
PINNED_EXPONENTS = {
    **dict.fromkeys(
        (
            "EUR", "USD", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN",
            "CZK", "HUF", "RON", "MXN", "BRL", "INR", "CNY", "HKD", "SGD", "ZAR", "ILS",
            "AED", "SAR", "TRY", "THB", "MAD",
        ),
        2,
    ),
    **dict.fromkeys(("JPY", "KRW", "ISK", "CLP", "VND", "XOF", "XAF", "UGX"), 0),
    **dict.fromkeys(("KWD", "BHD", "JOD", "OMR", "TND", "LYD", "IQD"), 3),
}  # fmt: skip


def test_every_accepted_currency_keeps_the_exponent_it_had():
    assert EXPONENTS == PINNED_EXPONENTS


def test_the_package_gives_the_pinned_exponent_for_every_accepted_currency():
    assert {code: iso4217.Currency(code).exponent for code in PINNED_EXPONENTS} == (
        PINNED_EXPONENTS
    )


def test_the_accepted_currencies_are_listed_once_in_their_old_order():
    assert list(EXPONENTS) == list(ACCEPTED_CURRENCIES) == list(PINNED_EXPONENTS)


@pytest.mark.parametrize("code", ["XAU", "XTS", "XXX", "USN", "ZWL", "eur1", ""])
def test_a_currency_not_accepted_is_refused_even_when_iso_lists_it(code):
    with pytest.raises(UnsupportedCurrency, match="unsupported currency"):
        normalize_currency(code)


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [
        (1250, "EUR", "12.50"),
        (5, "EUR", "0.05"),
        (-5, "EUR", "-0.05"),
        (0, "EUR", "0.00"),
        (1250, "JPY", "1250"),
        (1234567, "KWD", "1234.567"),
        (2**53 + 1, "EUR", "90071992547409.93"),  # a float division gave ….94
    ],
)
def test_an_amount_reads_in_major_units_exactly(minor, currency, major):
    assert to_major(minor, currency) == major


def test_the_admin_shows_a_large_balance_to_the_cent():
    from payflow.admin.display import money, money_html

    assert money(2**53 + 1, "EUR") == "90071992547409.93 EUR"
    assert money_html(2**53 + 1, "EUR") == (
        '<span class="money" title="9007199254740993 minor units">90071992547409.93 EUR</span>'
    )


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [("12.50", "EUR", 1250), ("12,5", "eur", 1250), (" 7 ", "EUR", 700), ("1250", "JPY", 1250),
     ("1.234", "KWD", 1234), ("0.01", "EUR", 1)],
)  # fmt: skip
def test_an_amount_typed_in_major_units_is_its_minor_units(typed, currency, minor):
    assert from_major(typed, currency) == minor


@pytest.mark.parametrize(
    "typed",
    ["12.505", "-1", "1e3", "1,000.00", "", " ", "12.", ".5", "٣", "0", "0.00", "+5", "12 50",
     "99999999999999.99", "4111111111111111", "9" * 5000],
)  # fmt: skip
def test_an_amount_typed_wrong_is_refused_with_what_is_expected(typed):
    with pytest.raises(InvalidAmount) as refused:
        from_major(typed, "EUR")
    assert str(refused.value) in (  # what is expected, never what was typed
        "amount must be an amount in EUR with at most 2 decimals, e.g. 12.50",
        "amount must be greater than zero",
        "amount must be at most 10000000000000.00 EUR",
    )


def test_a_currency_without_decimals_takes_none():
    with pytest.raises(InvalidAmount, match=r"with no decimals, e\.g\. 1250"):
        from_major("12.5", "JPY")
