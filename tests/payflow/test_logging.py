"""PAN redaction in log records (payflow.logging.PanRedactingFilter)."""

import io
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings

from payflow.logging import PanRedactingFilter, install_pan_redaction, redact_pans

PAN = "4242424242424242"
AMEX = "378282246310005"


@pytest.fixture
def redacted_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose only handler writes to a buffer through the filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(PanRedactingFilter())
    logger = logging.getLogger("tests.pan_redaction")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    yield logger, stream
    logger.handlers, logger.propagate = [], True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"card {PAN} declined", "card ************4242 declined"),
        ("4242 4242 4242 4242", "**** **** **** 4242"),
        ("4242-4242-4242-4242", "****-****-****-4242"),
        (AMEX, "***********0005"),
        ("36227206271667", "**********1667"),  # 14-digit Diners
        ("4000000000006", "*********0006"),  # 13 digits: the shortest PAN
        ("4000000000000000006", "***************0006"),  # 19 digits: the longest
        (f"pan={PAN}&exp=12", "pan=************4242&exp=12"),
        (f"x{PAN}y", "x************4242y"),
        (f"{PAN} 5555555555554444", "************4242 ************4444"),
        (f"{PAN},{AMEX}", "************4242,***********0005"),
        (f"[{PAN!r}]", "['************4242']"),
    ],
)
def test_pan_shaped_digit_runs_are_masked_but_for_the_last_four(text, expected):
    assert redact_pans(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails Luhn
        "order 1234567812345678 shipped",  # 16 digits, fails Luhn
        "400000000002",  # 12 digits pass Luhn but are too short
        "40000000000000000002",  # 20 digits in one group: not PAN-shaped
        "2026-11-21 19:33:13,123",
        "amount 10000 EUR, version 3",
        "0191f2c4-7a3b-7c00-8d00-123456789012",
        # a token id whose digit groups "23713-3971-7294" pass Luhn: was masked before
        "card token 01a23713-3971-7294-986a-15aa8ace7705 does not decrypt",
        "4242  4242  4242  4242",  # double spaces: not one run
        "",
    ],
)
def test_other_numbers_are_left_alone(text):
    assert redact_pans(text) == text


def test_a_pan_passed_as_an_argument_is_masked_in_the_output(redacted_logger):
    logger, stream = redacted_logger

    logger.info("tokenizing %s for %s", PAN, "merchant-1")
    logger.info("amex %(number)s", {"number": AMEX})
    logger.info("as a number: %d", int(PAN))
    logger.info(f"in the message itself: {PAN}")

    assert stream.getvalue().splitlines() == [
        "INFO tokenizing ************4242 for merchant-1",
        "INFO amex ***********0005",
        "INFO as a number: ************4242",
        "INFO in the message itself: ************4242",
    ]


def test_the_record_keeps_no_raw_argument_once_a_pan_was_masked(redacted_logger):
    # given a handler after the filter that looks at the raw record
    logger, _ = redacted_logger
    records = []
    logger.handlers[0].addFilter(lambda record: records.append(record) or True)

    # when a PAN is in an argument the format does not even print
    logger.info("order %(order)s", {"order": "A-1", "card": PAN})

    # then the template and the arguments are gone, only the masked message is left
    (record,) = records
    assert record.msg == "order A-1"
    assert record.args == ()
    assert PAN not in repr(vars(record))


def test_a_record_without_a_pan_is_not_touched(redacted_logger):
    logger, stream = redacted_logger
    records = []
    logger.handlers[0].addFilter(lambda record: records.append(record) or True)

    logger.info("payment %s captured %d", "p-1", 10_000)

    (record,) = records
    assert (record.msg, record.args) == ("payment %s captured %d", ("p-1", 10_000))
    assert stream.getvalue() == "INFO payment p-1 captured 10000\n"


def test_a_pan_in_an_exception_and_its_traceback_is_masked(redacted_logger):
    logger, stream = redacted_logger
    records = []
    logger.handlers[0].addFilter(lambda record: records.append(record) or True)

    try:
        try:
            raise ValueError(f"bad card {PAN}")
        except ValueError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError:
        logger.exception("tokenization failed")

    output = stream.getvalue()
    assert PAN not in output
    assert "ValueError: bad card ************4242" in output
    assert "RuntimeError: wrapped" in output
    assert output.startswith("ERROR tokenization failed\nTraceback (most recent call last):")
    # the exception object (which still holds the PAN) is dropped from the record
    assert records[0].exc_info is None


def test_an_exception_without_a_pan_keeps_its_exc_info(redacted_logger):
    logger, stream = redacted_logger
    records = []
    logger.handlers[0].addFilter(lambda record: records.append(record) or True)

    try:
        raise KeyError("merchant")
    except KeyError:
        logger.exception("lookup failed")

    assert records[0].exc_info is not None
    assert "KeyError: 'merchant'" in stream.getvalue()


def test_extra_attributes_and_stack_text_are_masked(redacted_logger):
    logger, stream = redacted_logger
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s card=%(card)s"))

    logger.info("with extra", extra={"card": PAN}, stack_info=True)

    output = stream.getvalue()
    assert output.startswith("with extra card=************4242\nStack (most recent call last):")
    assert PAN not in output


def test_a_broken_format_call_is_masked_instead_of_printed_raw_to_stderr(redacted_logger, capsys):
    logger, stream = redacted_logger

    logger.info("two placeholders %s %s", PAN)  # one argument: formatting fails

    assert stream.getvalue() == "INFO two placeholders %s %s ('************4242',)\n"
    captured = capsys.readouterr()
    assert "Logging error" not in captured.err
    assert PAN not in captured.err + captured.out


def test_filtering_twice_changes_nothing_more(redacted_logger):
    logger, stream = redacted_logger
    logger.handlers[0].addFilter(PanRedactingFilter())

    logger.warning("card %s", PAN)

    assert stream.getvalue() == "WARNING card ************4242\n"


def test_install_pan_redaction_adds_the_filter_to_every_handler_once():
    logger = logging.getLogger("tests.pan_install")
    handlers = [logging.StreamHandler(io.StringIO()), logging.NullHandler()]
    logger.handlers = list(handlers)
    try:
        install_pan_redaction(logger)
        install_pan_redaction(logger)

        for handler in handlers:
            assert [type(f) for f in handler.filters] == [PanRedactingFilter]
    finally:
        logger.handlers = []


def test_the_console_handler_of_the_settings_masks_pans():
    # given the console handler configured by settings.LOGGING
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["log_context", "pan_redaction"]
    (console,) = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, PanRedactingFilter) for f in handler.filters)
    ]
    stream = io.StringIO()
    previous = console.setStream(stream)
    try:
        # when any module logs a PAN
        logging.getLogger("ledger.some_module").warning("card %s expired", PAN)
    finally:
        console.setStream(previous)

    # then the console shows it masked
    assert stream.getvalue().endswith("WARNING ledger.some_module card ************4242 expired\n")
