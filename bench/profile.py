"""Where a payment's CPU goes: py-spy samples of every gunicorn worker under payment load.

py-spy (``record --format raw``) writes collapsed stacks, one ``frame;frame;… count`` per
line, root first. ``--gil`` samples only the thread holding the GIL: CPU spent in Python
(and in C code called without releasing it), never time blocked on the database, the
network or the GIL, so the shares are shares of the payment's CPU. ``--nonblocking`` keeps
the sampled process running while it is read, so the profile slows the server little; the
profiled run is an extra one and is not one of the measured figures. ``flame_graph_svg``
draws the stacks as a flame graph (the report's ``<date>-flame.svg``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")

#: Categories of inclusive cost: a sample counts for a category if any frame matches.
#: Hashing is matched by function (the entry's canonical bytes and its SHA-256, wherever they
#: live: ``payflow/platform/trail.py`` now); signing by the log's module, whose checkpoints
#: only the sequencer signs, in its own process, so the workers should show none of it.
HASHING = "audit hashing (entry_hash, encode_body)"
SIGNING = "audit log signing (audit/tlog.py)"
CATEGORIES = {
    HASHING: ("entry_hash (", "encode_body ("),
    SIGNING: ("audit/tlog.py",),
    "audit recording (payflow/platform/trail.py, audit/services.py)": (
        "payflow/platform/trail.py",
        "audit/services.py",
    ),
    "outbox rows (outbox/receivers.py)": ("outbox/receivers.py",),
    "database driver (MySQLdb)": ("MySQLdb/",),
    "Django ORM (django/db/)": ("django/db/",),
    # its own work: the wrapper frames (``wrapper``, ``_run``) hold the whole request
    "idempotency (payflow/api/idempotency.py, its own work)": (
        "_fence@payflow/api/idempotency.py",
        "_insert_claim@payflow/api/idempotency.py",
        "_completion@payflow/api/idempotency.py",
        "_stored_form@payflow/api/idempotency.py",
        "_request_hash@payflow/api/idempotency.py",
        "_columns@payflow/api/idempotency.py",
        "_key@payflow/api/idempotency.py",
    ),
    "API key auth (payflow/api/auth.py)": ("payflow/api/auth.py",),
    "card vault decrypt (ledger/vault.py)": ("ledger/vault.py",),
    "Redis and Celery (kombu/, redis/): none on the payment path": ("kombu/", "redis/"),
    "JSON encoding and decoding (json/)": ("/json/",),
}


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def record_during(
    pids: list[int], seconds: float, action: Callable[[], Any], workdir: Path
) -> dict:
    binary = py_spy()
    if binary is None:
        action()
        return {"available": False, "note": "py-spy is not installed (pip install -e '.[bench]')"}
    workdir.mkdir(parents=True, exist_ok=True)
    recorders = []
    for pid in pids:
        out = workdir / f"worker-{pid}.txt"
        recorders.append(
            (
                out,
                subprocess.Popen(
                    [
                        binary,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--gil",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                ),
            )
        )
    action()
    stacks: Counter[str] = Counter()
    errors = []
    for out, recorder in recorders:
        _, stderr = recorder.communicate(timeout=seconds + 60)
        if recorder.returncode != 0 or not out.exists():
            errors.append(stderr.decode(errors="replace")[-300:])
            continue
        stacks.update(read_collapsed(out.read_text()))
    if not stacks:
        return {"available": False, "note": "py-spy recorded nothing: " + " | ".join(errors)}
    flame = workdir / "payment-flame.svg"
    flame.write_text(flame_graph_svg(stacks, "CPU of a payment (gunicorn workers, py-spy --gil)"))
    return {"available": True, "workers": len(pids), "flame_svg": str(flame), **summarize(stacks)}


def read_collapsed(text: str) -> Counter[str]:
    stacks: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def _short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/wt-bench/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['function']} ({path})"


def _matches(frame: str, marker: str) -> bool:
    """``marker`` is part of the frame's text, or ``function@file``: that function of that
    file (``frame`` reads ``function (path:line)``)."""
    if "@" not in marker:
        return marker in frame
    function, path = marker.split("@", 1)
    return frame.strip().startswith(f"{function} (") and path in frame


def summarize(stacks: Counter[str], top: int = 15) -> dict:
    total = sum(stacks.values())
    self_cost: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        self_cost[_short(frames[-1])] += count
        for name in {_short(frame) for frame in frames}:
            inclusive[name] += count
        for category, markers in CATEGORIES.items():
            if any(_matches(frame, marker) for frame in frames for marker in markers):
                categories[category] += count

    def share(counter: Counter[str], limit: int | None = top) -> list[dict]:
        return [
            {"name": name, "samples": count, "share": count / total}
            for name, count in counter.most_common(limit)
        ]

    hashing = categories[HASHING]
    signing = categories[SIGNING]
    return {
        "samples": total,
        "top_self": share(self_cost),
        "top_inclusive": [row for row in share(inclusive, 60) if row["share"] < 0.999][:top],
        "categories": share(categories, None),
        "hashing_signing_share": (hashing + signing) / total if total else None,
    }


def flame_graph_svg(
    stacks: Counter[str], title: str, *, width: int = 1600, row: int = 16, min_share=0.002
) -> str:
    """A flame graph of collapsed stacks: each frame a box as wide as its share of the
    samples, callers below callees (root at the bottom); frames under ``min_share`` of the
    total are left out. Hovering a box shows its frame and share (an SVG ``<title>``)."""
    from html import escape

    total = sum(stacks.values())
    tree: dict = {"count": 0, "children": {}}
    for stack, count in stacks.items():
        node = tree
        node["count"] += count
        for frame in stack.split(";"):
            node = node["children"].setdefault(_short(frame), {"count": 0, "children": {}})
            node["count"] += count
    boxes: list[tuple[float, int, float, str, int]] = []
    depth_max = 0

    def place(node: dict, x: float, depth: int) -> None:
        nonlocal depth_max
        for name, child in sorted(node["children"].items()):
            share = child["count"] / total if total else 0
            if share >= min_share:
                boxes.append((x, depth, share, name, child["count"]))
                depth_max = max(depth_max, depth)
                place(child, x, depth + 1)
            x += share

    place(tree, 0.0, 0)
    height = (depth_max + 3) * row
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="12">{escape(title)}: {total} samples</text>',
    ]
    for x, depth, share, name, count in boxes:
        left, box_width = x * width, share * width
        top = height - (depth + 1) * row
        hue = 20 + (hash(name.split(" (")[-1]) % 40)
        label = name if len(name) * 6.5 < box_width else name[: max(int(box_width / 6.5) - 1, 0)]
        parts.append(
            f"<g><title>{escape(name)}: {count} samples, {100 * share:.1f}%</title>"
            f'<rect x="{left:.1f}" y="{top}" width="{box_width:.1f}" height="{row - 1}" '
            f'fill="hsl({hue},80%,60%)"/>'
            f'<text x="{left + 2:.1f}" y="{top + row - 4}">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
