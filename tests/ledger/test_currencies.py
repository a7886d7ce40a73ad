"""The accepted currencies' exponents, pinned: they come from the ``iso4217`` package now,
and an exponent that changed would reinterpret every stored amount in that currency."""

import iso4217
import pytest

from ledger.currencies import ACCEPTED_CURRENCIES, EXPONENTS, normalize_currency
from ledger.exceptions import UnsupportedCurrency

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
