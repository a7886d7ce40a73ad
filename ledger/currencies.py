"""ISO 4217 currencies PayFlow accepts, with their minor-unit exponents.

Amounts are integers in minor units (cents for EUR, yen for JPY, fils/1000 for KWD). The
exponent says how a human-readable amount maps to minor units; it never converts anything
inside the ledger, which only ever adds and compares integers.

Which currencies are accepted is PayFlow's decision (``ACCEPTED_CURRENCIES``); their
exponents are the ISO 4217 table's, as the ``iso4217`` package ships it. An exponent that
changed would reinterpret every stored amount in that currency, so
``tests/ledger/test_currencies.py`` pins each one: a package upgrade that changes one fails
there, not in production. Why the package: ``docs/libraries.md``.
"""

from __future__ import annotations

import iso4217

from ledger.exceptions import InvalidAmount, UnsupportedCurrency

ACCEPTED_CURRENCIES: tuple[str, ...] = (
    # 2 decimals
    "EUR",
    "USD",
    "GBP",
    "CHF",
    "CAD",
    "AUD",
    "NZD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "HUF",
    "RON",
    "MXN",
    "BRL",
    "INR",
    "CNY",
    "HKD",
    "SGD",
    "ZAR",
    "ILS",
    "AED",
    "SAR",
    "TRY",
    "THB",
    "MAD",
    # 0 decimals
    "JPY",
    "KRW",
    "ISK",
    "CLP",
    "VND",
    "XOF",
    "XAF",
    "UGX",
    # 3 decimals
    "KWD",
    "BHD",
    "JOD",
    "OMR",
    "TND",
    "LYD",
    "IQD",
)


def _iso_exponent(code: str) -> int:
    exponent = iso4217.Currency(code).exponent
    if exponent is None:  # the X codes (gold, testing) have no minor unit: not a currency
        raise ValueError(f"{code} has no minor unit in ISO 4217 and cannot be accepted")
    return exponent


#: Minor-unit exponent of each accepted currency, from the ISO 4217 table.
EXPONENTS: dict[str, int] = {code: _iso_exponent(code) for code in ACCEPTED_CURRENCIES}

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


def to_major(amount: int, currency: str) -> str:
    """How a person reads ``amount`` minor units: ``"12.50"`` for 1250 EUR, ``"1250"`` for
    1250 JPY, ``"-0.05"`` for -5 EUR (exact: integer arithmetic, never a float)."""
    exponent = EXPONENTS.get(currency, 2)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent)
    return f"{sign}{whole}.{fraction:0{exponent}d}" if exponent else f"{sign}{whole}"


def from_major(text: str, currency: str, *, param: str = "amount") -> int:
    """The minor units of an amount a person typed in major units (``"12.50"`` EUR → 1250,
    ``"12,5"`` → 1250, ``"1250"`` JPY → 1250). ``InvalidAmount`` for anything else: more
    decimals than the currency has, signs, exponents, thousands separators, blanks."""
    exponent = EXPONENTS[normalize_currency(currency)]
    cleaned = text.strip().replace(",", ".", 1) if isinstance(text, str) else ""
    whole, dot, fraction = cleaned.partition(".")
    if (
        len(cleaned) > 40  # no amount is this long (and int() refuses 4,300 digits)
        or not whole.isdigit()
        or not whole.isascii()
        or (dot and not (fraction.isdigit() and fraction.isascii()))
        or len(fraction) > exponent
        or (dot and not fraction)
    ):
        places = f"at most {exponent} decimals" if exponent else "no decimals"
        raise InvalidAmount(
            f"{param} must be an amount in {currency.upper()} with {places}, e.g. "
            f"{to_major(1250, currency.upper())}",
            param=param,
        )
    minor = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or 0)
    if minor > MAX_AMOUNT:  # said in the units it was typed in
        raise InvalidAmount(
            f"{param} must be at most {to_major(MAX_AMOUNT, currency.upper())} {currency.upper()}",
            param=param,
        )
    return validate_amount(minor, param=param)
