"""Two independent verifiers agree (issue 15): ``tools/verify_evidence.py`` (the auditors'
offline tool) and ``tests/audit/second_verifier.py`` (written from docs/audit-formats.md
alone) accept 100 bundles the application exports, and reject every tampered variant."""

from __future__ import annotations

import base64
import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from audit import tlog
from audit.evidence import evidence_export
from audit.models import AuditEntry, Checkpoint
from ledger.services.merchants import merchant_create
from ledger.services.refunds import refund_create
from tests.audit import second_verifier
from tests.audit.conftest import sequence
from tests.ledger.conftest import pay

pytestmark = pytest.mark.django_db(transaction=True)

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_evidence.py"
BUNDLES = 100


def tool_accepts(bundle: dict, tmp_path: Path, name: str, trusted_note: str | None) -> bool:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(bundle))
    command = [sys.executable, str(TOOL), str(path), "--public-key", settings.AUDIT_PUBLIC_KEY]
    if trusted_note is not None:
        note = tmp_path / f"{name}.trusted"
        note.write_text(trusted_note)
        command += ["--trusted-checkpoint", str(note)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.returncode == 0


def second_accepts(bundle: dict, trusted: tuple[int, bytes] | None) -> bool:
    return second_verifier.verify_bundle(bundle, settings.AUDIT_PUBLIC_KEY, trusted=trusted) == []


def tampered(bundle: dict, rng: random.Random) -> tuple[str, dict]:
    """One change an attacker could make to a bundle, and its name."""
    changed = copy.deepcopy(bundle)
    entry = rng.choice(changed["entries"])
    choice = rng.choice(["body", "hash", "prev", "index", "node", "root", "size", "signature"])
    if choice == "body":
        body = bytearray(base64.b64decode(entry["body"]))
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        entry["body"] = base64.b64encode(bytes(body)).decode()
    elif choice == "hash":
        entry["hash"] = ("0" if entry["hash"][0] != "0" else "1") + entry["hash"][1:]
    elif choice == "prev":
        entry["prev_hash"] = ("f" if entry["prev_hash"][0] != "f" else "e") + entry["prev_hash"][1:]
    elif choice == "index":
        entry["index"] = entry["index"] + 1
    elif choice == "node" and entry["inclusion"]:
        node = bytearray(base64.b64decode(entry["inclusion"][0]))
        node[0] ^= 1
        entry["inclusion"][0] = base64.b64encode(bytes(node)).decode()
    elif choice == "root" or choice == "node":
        lines = changed["checkpoint"].split("\n")
        root = bytearray(base64.b64decode(lines[2]))
        root[5] ^= 0x10
        lines[2] = base64.b64encode(bytes(root)).decode()
        changed["checkpoint"] = "\n".join(lines)
    elif choice == "size":
        changed["tree_size"] += 1
    else:
        note = changed["checkpoint"]
        cut = note.rindex(" ") + 1
        signature = bytearray(base64.b64decode(note[cut:].strip()))
        signature[-1] ^= 1
        changed["checkpoint"] = note[:cut] + base64.b64encode(bytes(signature)).decode() + "\n"
    return choice, changed


def test_both_verifiers_accept_100_exported_bundles_and_reject_every_tampered_one(tmp_path):
    rng = random.Random(15)
    merchants = [merchant_create(name=f"agreement-{i}") for i in range(3)]
    for round_ in range(4):  # four checkpoints, each sealing a bit more history
        for merchant in merchants:
            payment = pay(merchant, amount=1000 + 100 * round_)
            if rng.random() < 0.6:
                refund_create(payment=payment, amount=50)
        sequence()
    checkpoints = list(Checkpoint.objects.order_by("size"))
    assert len(checkpoints) >= 4
    objects = list(AuditEntry.objects.values_list("object_type", "object_id").distinct())
    accepted = rejected = 0
    for number in range(BUNDLES):
        trusted_checkpoint = rng.choice([None, *checkpoints[:-1]])
        trusted = (
            None
            if trusted_checkpoint is None
            else (trusted_checkpoint.size, bytes.fromhex(trusted_checkpoint.root))
        )
        selection = rng.random()
        if selection < 0.6:
            object_type, object_id = rng.choice(objects)
            query = {"object_type": object_type, "object_id": object_id}
        elif selection < 0.8:
            query = {"merchant_id": str(rng.choice(merchants).pk)}
        else:
            first = AuditEntry.objects.order_by("id").first().created_at
            query = {"since": first}
        bundle = evidence_export(
            **query,
            trusted_size=None if trusted is None else trusted[0],
            trusted_root=None if trusted is None else trusted[1],
        )
        note = None if trusted_checkpoint is None else trusted_checkpoint.note
        assert second_accepts(bundle, trusted), (number, query)
        assert tool_accepts(bundle, tmp_path, f"b{number}", note), (number, query)
        accepted += 1
        kind, forged = tampered(bundle, rng)
        assert not second_accepts(forged, trusted), (number, kind)
        assert not tool_accepts(forged, tmp_path, f"t{number}", note), (number, kind)
        rejected += 1
    assert (accepted, rejected) == (BUNDLES, BUNDLES)
    assert tlog.Verifier(settings.AUDIT_PUBLIC_KEY).name == "payflow.test/audit"
