"""ISO 4217 currencies PayFlow accepts, with their minor-unit exponents.

Amounts are integers in minor units (cents for EUR, yen for JPY, fils/1000 for KWD). The
exponent says how a human-readable amount maps to minor units; it never converts anything
inside the ledger, which only ever adds and compares integers.
"""

from __future__ import annotations

from ledger.exceptions import InvalidAmount, UnsupportedCurrency

EXPONENTS: dict[str, int] = {
    # 2 decimals
    "EUR": 2,
    "USD": 2,
    "GBP": 2,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "NZD": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "CZK": 2,
    "HUF": 2,
    "RON": 2,
    "MXN": 2,
    "BRL": 2,
    "INR": 2,
    "CNY": 2,
    "HKD": 2,
    "SGD": 2,
    "ZAR": 2,
    "ILS": 2,
    "AED": 2,
    "SAR": 2,
    "TRY": 2,
    "THB": 2,
    "MAD": 2,
    # 0 decimals
    "JPY": 0,
    "KRW": 0,
    "ISK": 0,
    "CLP": 0,
    "VND": 0,
    "XOF": 0,
    "XAF": 0,
    "UGX": 0,
    # 3 decimals
    "KWD": 3,
    "BHD": 3,
    "JOD": 3,
    "OMR": 3,
    "TND": 3,
    "LYD": 3,
    "IQD": 3,
}

#: Largest amount accepted in one transaction, in minor units (fits BIGINT with headroom).
MAX_AMOUNT = 10**15


def normalize_currency(code: object) -> str:
    """Upper-case ISO code, or ``UnsupportedCurrency``."""
    if not isinstance(code, str) or code.upper() not in EXPONENTS:
        raise UnsupportedCurrency(f"unsupported currency: {code!r}")
    return code.upper()


def validate_amount(amount: object, *, param: str = "amount") -> int:
    """A positive integer number of minor units; bool, float, Decimal and str are refused."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(
            f"{param} must be an integer number of minor units (e.g. 1050 for 10.50 EUR)",
            param=param,
        )
    if amount <= 0:
        raise InvalidAmount(f"{param} must be greater than zero", param=param)
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"{param} must be at most {MAX_AMOUNT}", param=param)
    return amount
