"""``/v1/docs`` renders in headless Chromium with every request off the server blocked,
under the same Content-Security-Policy as the admin (the ``page`` fixture fails on any
violation).

Reproduced before: the page loaded ``swagger-ui-dist@latest`` from a CDN, so offline it
was blank, and unpinned third-party JavaScript ran on the admin's origin.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
from PIL import Image

SCREENSHOT = "/tmp/payflow-api-docs.png"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_render_from_our_own_files_with_the_network_blocked(live_server, page):
    ours = urlsplit(live_server.url).netloc
    blocked: list[str] = []

    def only_our_server(route):
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_our_server)
    response = page.goto(f"{live_server.url}/v1/docs")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    title = page.locator(".swagger-ui .info .title")
    title.wait_for(state="visible")
    assert "PayFlow merchant API" in title.inner_text()
    # the operations are listed (the schema was fetched and rendered)
    page.locator(".opblock-summary-path", has_text="/v1/payments").first.wait_for()
    assert blocked == []
    # and the page is not blank: a screenshot with the rendered UI's many colours
    shot = Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB")
    colours = shot.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 50, len(colours)
    white = {colour: count for count, colour in colours}.get((255, 255, 255), 0)
    assert white < 0.97 * shot.width * shot.height
    shot.save(SCREENSHOT)  # for a human to look at after the run
