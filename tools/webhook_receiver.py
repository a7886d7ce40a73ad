#!/usr/bin/env python3
"""A webhook receiver for developing against PayFlow: verifies each delivery and prints it.

    python tools/webhook_receiver.py --secret whsec_... [--port 4242] [--tolerance 300]

Standalone (the Python standard library only, nothing of PayFlow), written from
``docs/webhooks.md``, so it doubles as the reference of how a merchant verifies
``PayFlow-Signature``: ``t=<unix seconds>,v1=<hex>[,v1=<hex>]`` where each ``v1`` is
HMAC-SHA256 with the endpoint's secret over ``"<t>." + the raw body``. A delivery is
accepted (204) when one ``v1`` matches in constant time and ``t`` is within the tolerance;
otherwise it is refused (400) and PayFlow retries it. Each accepted event prints one line:
its id, type, the object's id, status and version; ``--json`` prints the whole body.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Refused(Exception):
    pass


def verify(body: bytes, header: str, secret: str, tolerance: int, now: float) -> None:
    fields = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value for key, value in fields if key == "t"]
    signatures = [value for key, value in fields if key == "v1"]
    if len(stamps) != 1 or not stamps[0].isdigit() or not signatures:
        raise Refused("malformed PayFlow-Signature")
    if abs(now - int(stamps[0])) > tolerance:
        raise Refused("timestamp outside the tolerance (a replay?)")
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256)
    if not any(hmac.compare_digest(expected.hexdigest(), value) for value in signatures):
        raise Refused("no signature matches the secret")


def handler(secret: str, tolerance: int, whole: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                verify(
                    body, self.headers.get("PayFlow-Signature", ""), secret, tolerance, time.time()
                )
                event = json.loads(body)
            except (Refused, ValueError) as refused:
                print(f"refused: {refused}", flush=True)
                self.send_response(400)
                self.end_headers()
                return
            obj = event["data"]["object"]
            line = (
                f"verified {event['id']} {event['type']} {obj['id']} "
                f"status={obj.get('status')} version={obj.get('version')}"
            )
            print(json.dumps(event, indent=1) if whole else line, flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secret", required=True, help="the endpoint's whsec_… secret")
    parser.add_argument("--port", type=int, default=4242)
    parser.add_argument("--tolerance", type=int, default=300, help="seconds (default 300)")
    parser.add_argument("--json", action="store_true", help="print each whole event")
    args = parser.parse_args(argv)
    if not args.secret.startswith("whsec_"):
        parser.error("--secret must be the endpoint's secret (whsec_…)")
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), handler(args.secret, args.tolerance, args.json)
    )
    print(f"listening on http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
