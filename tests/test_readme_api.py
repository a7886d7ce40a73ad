"""The README's API examples ("The API by example" and live mode), run as a reader runs them
against a running server, each answer compared with the output the README shows.

The ``sh`` blocks run in order, in bash, with curl, as written; a reader's own changes are
the only ones made: the server's address (the test's live server instead of
``localhost:8000``), the demo key file ``var/demo-credentials.json`` (written here for a
fresh demo merchant), ``$LIVE_KEY`` (that merchant's live key), and the ids "you got"
(``TOKEN=``, ``PAY=``) taken from the previous answers. Each answer must carry every
member the README's output shows with the same value, ids, times and fingerprints aside
(they differ on every run).

Not run: the crash-and-retry example (it needs ``make run`` restarted with a slow acquirer;
``tests/faults`` proves the behaviour it shows), and the webhook walkthrough, whose blocks
are not ``sh`` (it needs a receiver process and the dispatcher beside the server:
``tests/e2e/test_webhooks_e2e.py`` and ``tests/test_webhook_receiver_tool.py`` prove it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ledger.services.api_keys import api_key_create
from ledger.services.merchants import merchant_create

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.django_db(transaction=True)

#: Values that differ on every run, so the README's cannot be compared.
VARYING = re.compile(r"^(tok|pay|re|po|cb|evt|acct)_[0-9a-f]{32}$|^[0-9a-f]{64}$")
VARYING_KEYS = {"created", "id", "payment", "fingerprint", "ETag", "request_id"}


def sections() -> list[tuple[str, str]]:
    """(command block, the output block right after it) of the API sections."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## The API by example")
    end = text.index("### Crashes and retries")
    part = text[start:end]
    blocks = re.findall(r"```(sh|json|)\n(.*?)```", part, flags=re.S)
    found = []
    for position, (kind, body) in enumerate(blocks):
        if kind == "sh":
            after = blocks[position + 1] if position + 1 < len(blocks) else ("", "")
            found.append((body, after[1] if after[0] in ("json", "") else ""))
    return found


def shown_pairs(output: str) -> list[tuple[str, str]]:
    """The (member, value) pairs of scalar members an output block shows."""
    pairs = re.findall(r'"(\w+)":\s*("(?:[^"\\]|\\.)*"|-?\d+|true|false|null)', output)
    return [
        (name, value)
        for name, value in pairs
        if name not in VARYING_KEYS and not VARYING.match(value.strip('"'))
    ]


@pytest.fixture
def demo(tmp_path):
    shop = merchant_create(name="Demo Shop")
    test_key = api_key_create(merchant=shop).secret
    live_key = api_key_create(merchant=shop, mode="live").secret
    home = tmp_path / "reader"
    (home / "var").mkdir(parents=True)
    (home / "var" / "demo-credentials.json").write_text(json.dumps({"api_key": test_key}))
    return home, live_key


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_api_examples_answer_what_the_readme_shows(live_server, demo):
    home, live_key = demo
    blocks = sections()
    assert len(blocks) >= 8, "the README's API section changed shape"
    host = live_server.url.removeprefix("http://")
    prefix, _ = blocks[0]  # KEY=… and H=(…): every later block runs after them
    got: dict[str, str] = {}
    checked = 0
    for commands, expected in blocks[1:]:
        script = commands.replace("localhost:8000", host)
        script = re.sub(r"^TOKEN=\S+.*$", lambda _: f"TOKEN={got['tok']}", script, flags=re.M)
        script = re.sub(r"^PAY=\S+.*$", lambda _: f"PAY={got['pay']}", script, flags=re.M)
        done = subprocess.run(
            ["bash", "-c", f"set -eu\n{prefix}\n{script}"],  # the reader's shell so far
            cwd=home,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "LIVE_KEY": live_key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (script, done.stdout, done.stderr)
        # what the reader set stays set in their shell for the next blocks
        prefix += "".join(
            line + "\n" for line in script.splitlines() if re.match(r"^(TOKEN|PAY)=", line)
        )
        answer = done.stdout
        for kind in ("tok", "pay"):
            match = re.search(rf'"id":\s*"({kind}_[0-9a-f]{{32}})"', answer)
            if match and kind not in got:
                got[kind] = match.group(1)
        for name, value in shown_pairs(expected):
            value_text = value.strip('"') if value.startswith('"') else value
            if name == "message":  # JSON-escaped in the answer as in the README
                value_text = json.loads(value)
            pattern = rf'"{name}":\s*' + (
                re.escape(json.dumps(value_text, ensure_ascii=False))
                if value.startswith('"')
                else re.escape(value)
            )
            assert re.search(pattern, answer), (commands, name, value, answer)
            checked += 1
        for header in re.findall(r"^(HTTP/1\.1 \d+ \w+.*)$", expected, flags=re.M):
            assert header.strip() in answer, (commands, header, answer)
    assert {"tok", "pay"} <= set(got)
    assert checked > 40  # the outputs were really compared
