"""Card validation (ledger.cards): Luhn, brands by IIN, lengths, expiry, CVC. No database."""

import datetime
import pickle
import re

import pytest

from ledger.cards import luhn_valid, validate_card, validate_cvc
from ledger.exceptions import InvalidCard

TODAY = datetime.date(2025, 6, 15)


def invalid(number="4242424242424242", exp_month=12, exp_year=2030) -> InvalidCard:
    with pytest.raises(InvalidCard) as caught:
        validate_card(number, exp_month, exp_year, today=TODAY)
    return caught.value


def assert_no_number_in(error: InvalidCard) -> None:
    # Not the number, not its last four, not any run of four digits from it.
    assert re.search(r"[0-9]{4}", error.message) is None
    assert re.search(r"[0-9]{4}", str(error)) is None


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        ("4242424242424242", "visa"),
        ("4000056655665556", "visa"),
        ("4000000000006", "visa"),  # 13 digits
        ("4000000000000000006", "visa"),  # 19 digits
        ("5555555555554444", "mastercard"),
        ("5200828282828210", "mastercard"),
        ("5100000000000008", "mastercard"),
        ("5500000000000004", "mastercard"),
        ("2221000000000009", "mastercard"),  # first of the 2-series
        ("2223003122003222", "mastercard"),
        ("2720000000000005", "mastercard"),  # last of the 2-series
        ("378282246310005", "amex"),
        ("371449635398431", "amex"),
        ("340000000000009", "amex"),
        ("6011111111111117", "discover"),
        ("6011000990139424", "discover"),
        ("6011000000000000001", "discover"),  # 19 digits
        ("6440000000000005", "discover"),
        ("6490000000000004", "discover"),
        ("6500000000000002", "discover"),
        ("3566002020360505", "jcb"),
        ("3528000000000007", "jcb"),
        ("3589000000000003", "jcb"),
        ("3056930009020004", "diners"),
        ("36227206271667", "diners"),  # 14 digits
    ],
)
def test_the_public_test_cards_are_valid_with_their_brand(number, brand):
    card = validate_card(number, 12, 2030, today=TODAY)

    assert card.number == number
    assert card.brand == brand
    assert card.last4 == number[-4:]
    assert (card.exp_month, card.exp_year) == (12, 2030)


@pytest.mark.parametrize(
    "written",
    ["4242 4242 4242 4242", "4242-4242-4242-4242", " 4242424242424242 ", "4242  4242--4242 4242"],
)
def test_spaces_and_dashes_are_stripped_from_the_number(written):
    assert validate_card(written, 1, 2030, today=TODAY).number == "4242424242424242"


@pytest.mark.parametrize(
    "number",
    [
        "4242424242424241",  # check digit off by one
        "4242424242424224",  # two digits swapped
        "5555555555554440",
        "378282246310006",
    ],
)
def test_a_number_failing_luhn_is_refused_without_echoing_it(number):
    error = invalid(number)

    assert error.code == "invalid_card"
    assert error.param == "card[number]"
    assert error.message == "the card number is not valid (check digit)"
    assert_no_number_in(error)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("40000000000000006", "a visa card number has 13, 16 or 19 digits"),
        ("3400000000000000", "an amex card number has 15 digits"),
        ("400000000002", "the card number must have 13 to 19 digits"),
        ("40000000000000000002", "the card number must have 13 to 19 digits"),
    ],
)
def test_a_number_with_the_wrong_length_for_its_brand_is_refused(number, message):
    error = invalid(number)

    assert error.param == "card[number]"
    assert error.message == message
    assert_no_number_in(error)


def test_a_mastercard_of_nineteen_digits_is_refused():
    # given a Luhn-valid 19-digit number in the Mastercard 51 range
    number = next(
        f"510000000000000000{d}" for d in "0123456789" if luhn_valid(f"510000000000000000{d}")
    )

    # when / then
    error = invalid(number)
    assert error.message == "a mastercard card number has 16 digits"


@pytest.mark.parametrize(
    "number",
    [
        "2220000000000000",  # just below the Mastercard 2-series
        "2721000000000004",  # just above it
        "5000000000000009",  # 50 is not Mastercard
        "5600000000000003",  # nor 56
        "6430000000000007",  # just below Discover 644
        "6200000000000005",  # UnionPay: not routed
        "1234000000000006",
    ],
)
def test_a_number_of_an_unsupported_brand_is_refused(number):
    error = invalid(number)

    assert error.param == "card[number]"
    assert error.message == "the card brand is not supported"
    assert_no_number_in(error)


@pytest.mark.parametrize(
    "number",
    [
        "4242x42424242424",
        "4242.4242.4242.4242",
        "\uff14\uff12" * 8,  # full-width digits: str.isdigit() says yes, we say no
        "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",  # Arabic-Indic digits
        "",
        "   ",
    ],
)
def test_a_number_with_other_characters_is_refused(number):
    error = invalid(number)

    assert error.param == "card[number]"
    assert error.message == (
        "the card number must contain only digits (spaces and dashes are allowed)"
    )
    assert_no_number_in(error)


@pytest.mark.parametrize("number", [4242424242424242, None, b"4242424242424242", 4.2])
def test_a_number_that_is_not_a_string_is_refused(number):
    error = invalid(number)

    assert error.param == "card[number]"
    assert error.message == "the card number must be a string of digits"
    assert_no_number_in(error)


@pytest.mark.parametrize("month", [0, 13, "0", "13", -1, "", "1a", None, True, 1.5, "12345"])
def test_an_invalid_expiry_month_is_refused(month):
    error = invalid(exp_month=month)

    assert error.param == "card[exp_month]"
    assert error.message in {
        "the expiry month must be between 1 and 12",
        "the expiry month must be a number",
    }


@pytest.mark.parametrize(("month", "expected"), [(1, 1), ("04", 4), ("12", 12), (" 7 ", 7)])
def test_an_expiry_month_may_be_a_number_or_digits(month, expected):
    assert validate_card("4242424242424242", month, 2030, today=TODAY).exp_month == expected


@pytest.mark.parametrize(
    ("year", "expected"), [(2030, 2030), ("2030", 2030), (30, 2030), ("30", 2030), (25, 2025)]
)
def test_an_expiry_year_has_four_digits_or_two_as_printed_on_the_card(year, expected):
    assert validate_card("4242424242424242", 12, year, today=TODAY).exp_year == expected


@pytest.mark.parametrize("year", [203, "203", 5, "5", "20300", 20300, None, True, "twenty"])
def test_an_expiry_year_of_another_shape_is_refused(year):
    error = invalid(exp_year=year)

    assert error.param == "card[exp_year]"


def test_a_card_expiring_this_month_is_valid_through_its_last_day():
    # given today is 15 June 2025 (and the last day of June)
    for today in (TODAY, datetime.date(2025, 6, 30)):
        card = validate_card("4242424242424242", 6, 2025, today=today)

        assert (card.exp_month, card.exp_year) == (6, 2025)


def test_a_card_that_expired_last_month_is_refused_on_the_month():
    error = invalid(exp_month=5, exp_year=2025)

    assert error.param == "card[exp_month]"
    assert error.message == "the card has expired"


def test_a_card_that_expired_last_year_is_refused_on_the_year():
    error = invalid(exp_month=12, exp_year=2024)

    assert error.param == "card[exp_year]"
    assert error.message == "the card has expired"


def test_the_first_of_the_next_month_makes_the_card_expired():
    with pytest.raises(InvalidCard) as caught:
        validate_card("4242424242424242", 6, 2025, today=datetime.date(2025, 7, 1))

    assert caught.value.param == "card[exp_month]"


def test_an_expiry_more_than_fifty_years_ahead_is_refused():
    assert validate_card("4242424242424242", 12, 2075, today=TODAY).exp_year == 2075

    error = invalid(exp_year=2076)
    assert error.param == "card[exp_year]"
    assert error.message == "the expiry year is too far in the future"


def test_without_a_date_the_expiry_is_checked_against_today():
    with pytest.raises(InvalidCard) as caught:
        validate_card("4242424242424242", 1, 2000)

    assert caught.value.param == "card[exp_year]"
    next_year = datetime.datetime.now(datetime.UTC).year + 1
    assert validate_card("4242424242424242", 12, next_year).exp_year == next_year


def test_the_number_is_checked_before_the_expiry():
    error = invalid(number="4242424242424241", exp_month=13, exp_year=1999)

    assert error.param == "card[number]"


def test_a_validated_card_never_shows_its_number():
    card = validate_card("4242424242424242", 3, 2031, today=TODAY)

    assert repr(card) == "ValidatedCard(number=****4242, brand=visa, exp=03/2031)"
    assert str(card) == repr(card)
    assert "4242424242424242" not in f"{card!r} {card!s} {[card]} { ({'c': card}) }"
    with pytest.raises(TypeError, match="must not be serialized"):
        pickle.dumps(card)


@pytest.mark.parametrize(
    ("cvc", "brand"),
    [("123", "visa"), ("000", "mastercard"), ("999", "discover"), ("1234", "amex")],
)
def test_a_cvc_has_three_digits_or_four_for_amex(cvc, brand):
    assert validate_cvc(cvc, brand) == cvc


@pytest.mark.parametrize(
    ("cvc", "brand", "message"),
    [
        ("123", "amex", "the security code must be 4 digits"),
        ("1234", "visa", "the security code must be 3 digits"),
        ("12", "mastercard", "the security code must be 3 digits"),
        ("12a", "visa", "the security code must be 3 digits"),
        ("\uff11\uff12\uff13", "visa", "the security code must be 3 digits"),
        (123, "visa", "the security code must be 3 digits"),
        (None, "visa", "the security code must be 3 digits"),
        ("", "visa", "the security code must be 3 digits"),
    ],
)
def test_a_malformed_cvc_is_refused_without_echoing_it(cvc, brand, message):
    with pytest.raises(InvalidCard) as caught:
        validate_cvc(cvc, brand)

    assert caught.value.param == "card[cvc]"
    assert caught.value.message == message  # exactly: the CVC is never echoed


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("0", True),
        ("18", True),
        ("79927398713", True),  # the textbook example
        ("79927398710", False),
        ("4242424242424242", True),
        ("4242424242424243", False),
        ("0000000000000000", True),
    ],
)
def test_luhn(digits, expected):
    assert luhn_valid(digits) is expected
