"""Card data validation: pure functions, no database, no crypto.

``validate_card`` turns what a merchant sent (number, expiry month and year) into a
``ValidatedCard`` or raises ``InvalidCard`` with the offending ``param``. Error messages
never contain the number, not even part of it: they end up in API responses and logs.

Brands are told apart by their IIN (issuer identification number) ranges; each brand has
its own allowed lengths. A number of an unlisted brand is refused: the acquirer could not
route it. Expiry is "valid through the last day of the month" in UTC.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ledger.exceptions import InvalidCard
from payflow.platform.cardnumbers import luhn_valid

PARAM_NUMBER = "card[number]"
PARAM_EXP_MONTH = "card[exp_month]"
PARAM_EXP_YEAR = "card[exp_year]"
PARAM_CVC = "card[cvc]"

#: How far ahead an expiry year may be; cards are issued for well under this.
MAX_YEARS_AHEAD = 50

_SEPARATORS = re.compile(r"[ \-]")
_ASCII_DIGITS = re.compile(r"[0-9]+")
_SMALL_NUMBER = re.compile(r"[0-9]{1,4}")


@dataclass(frozen=True)
class Brand:
    name: str
    #: IIN ranges as (first prefix, last prefix), compared on the prefix's number of digits.
    iin_ranges: tuple[tuple[str, str], ...]
    lengths: frozenset[int]
    cvc_length: int = 3


# Order matters only for readability: the ranges of different brands do not overlap.
BRANDS: tuple[Brand, ...] = (
    Brand("visa", (("4", "4"),), frozenset({13, 16, 19})),
    Brand("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    Brand("amex", (("34", "34"), ("37", "37")), frozenset({15}), cvc_length=4),
    Brand(
        "discover",
        (("6011", "6011"), ("644", "649"), ("65", "65")),
        frozenset(range(16, 20)),
    ),
    Brand("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    Brand(
        "diners",
        (("300", "305"), ("36", "36"), ("38", "39")),
        frozenset(range(14, 20)),
    ),
)
BRANDS_BY_NAME = {brand.name: brand for brand in BRANDS}


@dataclass(frozen=True, repr=False)
class ValidatedCard:
    """A card that passed validation. ``number`` is the PAN: digits only, never logged."""

    number: str
    brand: str
    exp_month: int
    exp_year: int

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:
        return (
            f"ValidatedCard(number={mask_pan(self.number)}, brand={self.brand}, "
            f"exp={self.exp_month:02d}/{self.exp_year})"
        )

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Keep the PAN out of pickles (caches, Celery arguments, sessions).
        raise TypeError("a card with its PAN must not be serialized")


def mask_pan(number: str) -> str:
    """The only way a PAN is shown: its last four digits."""
    return f"****{number[-4:]}" if len(number) >= 4 else "****"


def detect_brand(digits: str) -> Brand | None:
    """The brand whose IIN ranges contain the number's prefix, or None."""
    for brand in BRANDS:
        for low, high in brand.iin_ranges:
            prefix = digits[: len(low)]
            if len(prefix) == len(low) and low <= prefix <= high:
                return brand
    return None


def _normalize_number(number: Any) -> str:
    if not isinstance(number, str):
        raise InvalidCard("the card number must be a string of digits", param=PARAM_NUMBER)
    digits = _SEPARATORS.sub("", number)
    if not _ASCII_DIGITS.fullmatch(digits):
        raise InvalidCard(
            "the card number must contain only digits (spaces and dashes are allowed)",
            param=PARAM_NUMBER,
        )
    return digits


def _spoken_list(numbers: list[int]) -> str:
    words = [str(n) for n in numbers]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _validate_number(number: Any) -> tuple[str, Brand]:
    digits = _normalize_number(number)
    if not 13 <= len(digits) <= 19:
        raise InvalidCard("the card number must have 13 to 19 digits", param=PARAM_NUMBER)
    if not luhn_valid(digits):
        raise InvalidCard("the card number is not valid (check digit)", param=PARAM_NUMBER)
    brand = detect_brand(digits)
    if brand is None:
        raise InvalidCard("the card brand is not supported", param=PARAM_NUMBER)
    if len(digits) not in brand.lengths:
        article = "an" if brand.name[0] in "aeiou" else "a"
        lengths = _spoken_list(sorted(brand.lengths))
        raise InvalidCard(
            f"{article} {brand.name} card number has {lengths} digits", param=PARAM_NUMBER
        )
    return digits, brand


def _digits_of(value: Any, *, param: str, what: str) -> str:
    """A month or year given as int or as a string of 1-4 ASCII digits ("04"), as digits."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9999:
        return str(value)
    if isinstance(value, str) and _SMALL_NUMBER.fullmatch(value.strip()):
        return value.strip()
    raise InvalidCard(f"{what} must be a number", param=param)


def _expiry_month(exp_month: Any) -> int:
    month = int(_digits_of(exp_month, param=PARAM_EXP_MONTH, what="the expiry month"))
    if not 1 <= month <= 12:
        raise InvalidCard("the expiry month must be between 1 and 12", param=PARAM_EXP_MONTH)
    return month


def _expiry_year(exp_year: Any) -> int:
    digits = _digits_of(exp_year, param=PARAM_EXP_YEAR, what="the expiry year")
    if len(digits) == 2:  # as printed on the card: "34" is 2034
        return 2000 + int(digits)
    if len(digits) == 4:
        return int(digits)
    raise InvalidCard(
        "the expiry year must have 4 digits (or 2, as printed on the card)", param=PARAM_EXP_YEAR
    )


def _validate_expiry(exp_month: Any, exp_year: Any, today: datetime.date) -> tuple[int, int]:
    month, year = _expiry_month(exp_month), _expiry_year(exp_year)
    if year < today.year:
        raise InvalidCard("the card has expired", param=PARAM_EXP_YEAR)
    if year == today.year and month < today.month:
        raise InvalidCard("the card has expired", param=PARAM_EXP_MONTH)
    if year > today.year + MAX_YEARS_AHEAD:
        raise InvalidCard("the expiry year is too far in the future", param=PARAM_EXP_YEAR)
    return month, year


def validate_card(
    number: Any, exp_month: Any, exp_year: Any, *, today: datetime.date | None = None
) -> ValidatedCard:
    """Validate a card; raise ``InvalidCard`` (with ``param``) on the first problem.

    ``number`` may contain spaces and dashes. ``exp_year`` is 4 digits, or 2 (``"34"`` or
    ``34`` means 2034). The card is valid through the last day of its expiry month (UTC).
    """
    digits, brand = _validate_number(number)
    month, year = _validate_expiry(exp_month, exp_year, today or timezone.now().date())
    return ValidatedCard(number=digits, brand=brand.name, exp_month=month, exp_year=year)


def validate_cvc(cvc: Any, brand: str) -> str:
    """The CVC as digits: 4 for American Express, 3 otherwise. Never stored, never logged."""
    expected = BRANDS_BY_NAME[brand].cvc_length if brand in BRANDS_BY_NAME else 3
    if not isinstance(cvc, str) or not _ASCII_DIGITS.fullmatch(cvc) or len(cvc) != expected:
        raise InvalidCard(f"the security code must be {expected} digits", param=PARAM_CVC)
    return cvc
