"""The one request parser: JSON, refused with 400 when it is not text the API can store.

DRF's ``JSONParser`` accepts two things that later became 500s: a string holding an
unpaired surrogate escape (``"\\ud800"`` is valid JSON grammar but not Unicode: MariaDB's
JSON check refused the row, error 4025) and nesting deep enough to exhaust Python's
recursion limit (``RecursionError``). Both are ``ParseError`` here, answered as
``malformed_json``; the message never repeats the input.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

#: Deeper than any request body of the API (metadata is flat; a card is two levels).
MAX_DEPTH = 32


def _check(value: Any) -> None:
    """Walk the parsed value without recursion: depth bound, every string encodable."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParseError(f"The JSON body is nested more than {MAX_DEPTH} levels deep.")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(
            "The JSON body holds a string that is not valid Unicode (an unpaired surrogate escape)."
        ) from None


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                f"The JSON body is nested more than {MAX_DEPTH} levels deep."
            ) from None
        _check(data)
        return data
