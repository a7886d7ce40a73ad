"""Request middleware: the audit context of each request; the browser pages' CSP."""

from __future__ import annotations

import re

from django.conf import settings

from payflow.platform import context

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


class AuditContextMiddleware:
    """Bind IP, user agent, request id (and a logged-in user as actor) for the request.

    The client IP is REMOTE_ADDR unless ``TRUSTED_PROXY_COUNT`` proxies sit in front, in
    which case it is taken from X-Forwarded-For that many hops from the right (a client
    cannot forge it past the proxies). The request id echoes a well-formed X-Request-ID or
    is generated, and is returned in the response.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        supplied = request.headers.get("X-Request-ID", "")
        request_id = supplied if _REQUEST_ID.fullmatch(supplied) else context.new_request_id()
        audit = context.AuditContext(
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", "")[:300],
            request_id=request_id,
        )
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            audit = context.AuditContext(
                **{
                    **audit.__dict__,
                    "actor_type": "user",
                    "actor_id": str(user.pk),
                    "actor_label": user.get_username(),
                }
            )
        with context.replaced(audit):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def client_ip(request) -> str:
    hops = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if hops:
        forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops][:45]
    return request.META.get("REMOTE_ADDR", "")[:45]


#: The pages people open in a browser (admin, auditors' views, API docs) load nothing but
#: PayFlow's own files: no inline or third-party script, no framing, forms posting home.
#: Inline styles stay allowed (Django's admin and Swagger UI set style attributes).
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
BROWSER_PATHS = ("/admin/", "/audit/", "/v1/docs")


class ContentSecurityPolicyMiddleware:
    """Sets ``CONTENT_SECURITY_POLICY`` on the browser pages (``BROWSER_PATHS``); the JSON
    API needs none."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(BROWSER_PATHS):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response
