"""``GET /v1/events``: the merchant's own business events (from the outbox).

Until the outbox app stores events, the list is empty; the shape is final.
"""

from __future__ import annotations

from typing import Any

from payflow.api.pagination import parse_limit


def merchant_events(request) -> dict[str, Any]:
    parse_limit(request.query_params.get("limit"))
    return {"object": "list", "url": request.path, "has_more": False, "data": []}
