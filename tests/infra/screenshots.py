"""Screenshots of the pages a browser test walked through, kept as test artifacts."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

#: Where the screenshots go, for a person to look at after the run (``var/`` is ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts"


def checked_screenshot(page, name: str) -> Path:
    """A full-page screenshot saved as ``ARTIFACTS/<name>.png``, checked to show a page
    (many colours, not a blank or single-colour surface)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(full_page=True)
    image = Image.open(io.BytesIO(data)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 20, (name, len(colours))
    white = {colour: count for count, colour in colours}.get((255, 255, 255), 0)
    assert white < 0.98 * image.width * image.height, name
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(data)
    return path
