"""PAN redaction for log records: the backstop behind "a PAN is never logged".

``PanRedactingFilter`` is attached to the log handlers (``settings.LOGGING``). It masks
every PAN-shaped digit run in a record's formatted message, its arguments, its ``extra``
string attributes, its exception text and its stack text, before any formatter sees it.

What counts as PAN-shaped: a run of digit groups separated by single spaces or dashes
("4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242"), of which a sequence of
whole groups totalling 13 to 19 digits passes the Luhn check. Two card numbers written
next to each other ("4242424242424242 5555555555554444") are two PANs and both masked.
A single group of more than 19 digits is not PAN-shaped and is left alone, as are Luhn
failures (order numbers, timestamps) and canonical UUIDs (``8-4-4-4-12`` hex, the ids of
every row) so that the logs stay useful.

The mask keeps the last four digits and the separators, and replaces every other digit
with ``*``: "4242 4242 4242 4242" becomes "**** **** **** 4242". The last four are what
support matches against a token's ``last4``; the first six (the BIN) are not kept: a log
line has no need for them and with the last four they narrow the PAN down too much.

The filter only protects the handlers it is attached to. Processes that install their own
handlers (Celery hijacks the root logger in workers, gunicorn has its own) need it too:
``install_pan_redaction(logger)`` adds it to every handler of a logger.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import traceback
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from payflow.platform import context
from payflow.platform.cardnumbers import luhn_valid

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
KEEP_LAST_DIGITS = 4

_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_DIGIT_GROUP = re.compile(r"[0-9]+")
# A canonical UUID (the ids of every row and request) is left whole: its digit groups,
# split by hex letters and dashes, pass the Luhn check by chance about one time in ten.
_UUID = re.compile(
    r"(?<![0-9A-Za-z-])[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}(?![0-9A-Za-z-])"
)
# Attributes every LogRecord has; any other attribute came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", (), None)).keys()
) | {"message", "asctime"}


def _pan_ending(groups: list[str], first: int) -> int | None:
    """The last group of the longest PAN starting at group ``first``, if there is one."""
    candidates, total = [], 0
    for last in range(first, len(groups)):  # at most 19 groups: each has a digit
        total += len(groups[last])
        if total > PAN_MAX_DIGITS:
            break
        if total >= PAN_MIN_DIGITS:
            candidates.append(last)
    for last in reversed(candidates):
        if luhn_valid("".join(groups[first : last + 1])):
            return last
    return None


def _pan_spans(groups: list[str]) -> list[tuple[int, int]]:
    """(first, last) group indexes of each PAN in a run, longest first, left to right."""
    spans = []
    first = 0
    while first < len(groups):
        last = _pan_ending(groups, first)
        if last is None:
            first += 1
        else:
            spans.append((first, last))
            first = last + 1
    return spans


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    groups = list(_DIGIT_GROUP.finditer(run))
    if sum(len(group.group()) for group in groups) < PAN_MIN_DIGITS:
        return run
    chars = list(run)
    for first, last in _pan_spans([group.group() for group in groups]):
        positions = [index for group in groups[first : last + 1] for index in range(*group.span())]
        for index in positions[:-KEEP_LAST_DIGITS]:
            chars[index] = "*"
    return "".join(chars)


def redact_pans(text: str) -> str:
    """``text`` with every PAN-shaped digit run masked (see the module docstring)."""
    parts, start = [], 0
    for uuid in _UUID.finditer(text):
        parts.append(_DIGIT_RUN.sub(_mask_run, text[start : uuid.start()]))
        parts.append(uuid.group())
        start = uuid.end()
    parts.append(_DIGIT_RUN.sub(_mask_run, text[start:]))
    return "".join(parts)


def _has_pan(value: Any) -> bool:
    text = value if isinstance(value, str) else str(value)
    return redact_pans(text) != text


def _args_have_pan(args: Any) -> bool:
    if not args:
        return False
    values = args.values() if isinstance(args, Mapping) else args
    return any(_has_pan(value) for value in values)


def _redact_message(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # broken format/args: logging would print both raw to stderr
        message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_pans(message), ()
        return
    redacted = redact_pans(message)
    if redacted != message or _args_have_pan(record.args):
        # The formatted, masked message replaces the template and its arguments: no
        # handler or formatter can get at the raw arguments any more.
        record.msg, record.args = redacted, ()


def _redact_exception(record: logging.LogRecord) -> None:
    if record.exc_info and record.exc_info[0] is not None:
        text = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip()
        redacted = redact_pans(text)
        if redacted != text:
            # Formatters print exc_text when it is set; the exception object itself still
            # holds the PAN, so it goes (handlers that read exc_info get nothing to leak).
            record.exc_text, record.exc_info = redacted, None
    elif record.exc_text:
        record.exc_text = redact_pans(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_pans(record.stack_info)


def _redact_extra(record: logging.LogRecord) -> None:
    for name, value in list(vars(record).items()):
        if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
            setattr(record, name, redact_pans(value))


class PanRedactingFilter(logging.Filter):
    """Mask PAN-shaped digit runs in every record; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_message(record)
        _redact_exception(record)
        _redact_extra(record)
        return True


def install_pan_redaction(logger: logging.Logger | None = None) -> None:
    """Attach ``PanRedactingFilter`` to every handler of ``logger`` (default: the root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, PanRedactingFilter) for existing in handler.filters):
            handler.addFilter(PanRedactingFilter())


# --- context and JSON -----------------------------------------------------------------

#: What ``LogContextFilter`` adds to every record, from the audit context.
CONTEXT_ATTRIBUTES = ("request_id", "actor", "merchant_id", "task_id")


class LogContextFilter(logging.Filter):
    """Add the current request id, actor (``type:id``), merchant id and task id to every
    record (empty strings outside a request or task). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = context.current()
        values = {
            "request_id": current.request_id,
            "actor": f"{current.actor_type}:{current.actor_id}" if current.has_actor else "",
            "merchant_id": current.merchant_id,
            "task_id": current.task_id,
        }
        for name, value in values.items():
            if not getattr(record, name, ""):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, the context attributes,
    and the exception text when there is one. The whole line goes through ``redact_pans``
    as well, so no field (however it got there) can carry a PAN."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in CONTEXT_ATTRIBUTES:
            value = getattr(record, name, "")
            if value:
                document[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        return redact_pans(json.dumps(document, default=str, ensure_ascii=False))


def install_log_format(logger: logging.Logger | None = None) -> None:
    """For handlers installed by others (Celery, gunicorn): the context filter, the PAN
    filter, and with ``LOG_FORMAT=json`` the JSON formatter, on every handler of ``logger``."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(existing, LogContextFilter) for existing in handler.filters):
            handler.filters.insert(0, LogContextFilter())
        if getattr(settings, "LOG_FORMAT", "plain") == "json":
            handler.setFormatter(JsonFormatter())
    install_pan_redaction(logger)
