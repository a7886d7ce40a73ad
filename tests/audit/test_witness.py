"""Witnesses of the log (``manage.py audit_witness``), the log's public endpoint
(``/audit/log/``) they poll, and the signed notes and cosignatures they exchange
(``docs/audit-formats.md`` §3, §4, §8).

The witness runs against a real HTTP server (pytest-django's ``live_server``): it accepts a
checkpoint only with a valid consistency proof from the one it accepted before, cosigns it
and sends the cosignature back; on a fork (history rewritten and re-signed with a stolen key)
it raises the alarm: exit status 3 and ``payflow_audit_witness_alarm 1``.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import struct
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.utils import timezone

from audit import merkle, tlog
from audit.models import AuditEntry, Checkpoint, Cosignature, LogLeaf, LogNode
from audit.verify import verify_log
from ledger.models import Transaction
from ledger.services.refunds import refund_create
from tests.audit.conftest import TEST_SIGNER_KEY, raw, rewrite_chain, sequence, triggers_dropped
from tests.audit.test_tamper import _rebuild_tree
from tests.ledger.conftest import pay

ORIGIN = "payflow.test/audit"


def log_nodes(keys):
    wanted = {tlog.node_key(level, index): (level, index) for level, index in keys}
    rows = LogNode.objects.filter(key__in=list(wanted)).values_list("key", "hash")
    return {wanted[key]: bytes(digest) for key, digest in rows}


# --- the witness command ------------------------------------------------------------------


class WitnessRun:
    """``manage.py audit_witness --once`` against the live server, with one witness key."""

    def __init__(self, live_server, tmp_path, name="witness.test/w1"):
        self.url = live_server.url + "/audit/log/"
        self.key = tlog.generate_witness_key(name)
        self.verifier_key = tlog.WitnessSigner(self.key).verifier_key()
        self.state = tmp_path / f"{name.replace('/', '_')}.json"
        self.metrics = tmp_path / f"{name.replace('/', '_')}.prom"

    def __call__(self, *, submit=True):
        arguments = [
            "--once",
            "--log-url",
            self.url,
            "--public-key",
            settings.AUDIT_PUBLIC_KEY,
            "--witness-key",
            self.key,
            "--state",
            str(self.state),
            "--metrics-file",
            str(self.metrics),
            *(["--submit"] if submit else []),
        ]
        call_command("audit_witness", *arguments)

    def metric(self, name):
        for line in self.metrics.read_text().splitlines():
            if line.startswith(name + " "):
                return int(line.split()[1])
        return None

    def accepted(self):
        return json.loads(self.state.read_text())


@pytest.fixture
def witness(live_server, tmp_path, settings):
    run = WitnessRun(live_server, tmp_path)
    settings.AUDIT_WITNESS_KEYS = [run.verifier_key]  # the log stores only known witnesses
    return run


@pytest.fixture
def history(merchant):
    payment = pay(merchant, amount=9000)
    refund_create(payment=payment, amount=100)
    sequence()
    return payment


@pytest.mark.django_db(transaction=True)
def test_the_witness_accepts_and_cosigns_each_consistent_checkpoint(
    history, witness, live_server, capsys
):
    # the first checkpoint it sees: accepted (nothing to be consistent with yet) and cosigned
    witness()
    first = Checkpoint.objects.get()
    assert f"accepted and cosigned checkpoint {first.size}" in capsys.readouterr().out
    assert (
        witness.metric("payflow_audit_witness_alarm"),
        witness.metric("payflow_audit_witness_accepted_size"),
    ) == (0, first.size)
    assert witness.accepted()["size"] == first.size
    assert base64.b64decode(witness.accepted()["root"]).hex() == first.root
    cosignature = Cosignature.objects.get()
    assert (cosignature.checkpoint_id, cosignature.witness) == (first.size, "witness.test/w1")
    published = _get(live_server, "checkpoint")
    assert published == first.note + cosignature.line + "\n"
    valid = tlog.verify_cosignatures(published, [tlog.WitnessVerifier(witness.verifier_key)])
    assert ([name for name, _, _ in valid.valid], valid.invalid) == (["witness.test/w1"], [])
    # nothing new: nothing cosigned again
    witness()
    assert "accepted" not in capsys.readouterr().out
    assert Cosignature.objects.count() == 1
    # the log grows: the new checkpoint is accepted with the consistency proof from the first
    refund_create(payment=Transaction.objects.get(pk=history.pk), amount=200)
    sequence()
    second = Checkpoint.objects.order_by("-size").first()
    assert second.size > first.size
    witness()
    assert f"accepted and cosigned checkpoint {second.size}" in capsys.readouterr().out
    assert witness.metric("payflow_audit_witness_accepted_size") == second.size
    assert list(Cosignature.objects.order_by("id").values_list("checkpoint_id", flat=True)) == [
        first.size,
        second.size,
    ]
    assert _get(live_server, "checkpoint").endswith(
        Cosignature.objects.get(checkpoint_id=second.size).line + "\n"
    )
    assert verify_log().ok  # cosignatures change nothing the verification checks


@pytest.mark.django_db(transaction=True)
def test_two_witnesses_cosign_the_same_checkpoint(history, live_server, tmp_path, settings):
    first, second = WitnessRun(live_server, tmp_path), WitnessRun(live_server, tmp_path, "w.test/2")
    settings.AUDIT_WITNESS_KEYS = [first.verifier_key, second.verifier_key]
    first()
    second()
    note = _get(live_server, f"checkpoint/{Checkpoint.objects.get().size}")
    witnesses = [
        tlog.WitnessVerifier(first.verifier_key),
        tlog.WitnessVerifier(second.verifier_key),
    ]
    assert sorted(name for name, _, _ in tlog.verify_cosignatures(note, witnesses).valid) == [
        "w.test/2",
        "witness.test/w1",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_cosignature_the_log_refused_is_sent_again_on_the_next_poll(
    history, witness, settings, capsys
):
    settings.AUDIT_WITNESS_KEYS = []  # the log does not know this witness yet
    with pytest.raises(CommandError, match="did not answer usefully"):
        witness()  # accepted (state saved), but the log answered 400 to the cosignature
    assert witness.accepted()["size"] == Checkpoint.objects.get().size
    assert not Cosignature.objects.exists()
    settings.AUDIT_WITNESS_KEYS = [witness.verifier_key]  # the operator adds its key
    witness()  # the same checkpoint: the log shows no cosignature of it, so it sends again
    assert Cosignature.objects.get().witness == "witness.test/w1"
    witness()  # now the log shows it: nothing more to send
    assert Cosignature.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_submit_the_witness_cosigns_for_itself_only(history, witness):
    witness(submit=False)
    assert witness.accepted()["size"] == Checkpoint.objects.get().size
    assert not Cosignature.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_keys_may_be_given_as_files(history, witness, tmp_path, capsys):
    log_key, witness_key = tmp_path / "log.vkey", tmp_path / "witness.key"
    log_key.write_text(settings.AUDIT_PUBLIC_KEY + "\n")
    witness_key.write_text(witness.key + "\n")
    call_command(
        "audit_witness",
        "--once",
        "--log-url",
        witness.url,
        "--public-key",
        f"@{log_key}",
        "--witness-key",
        f"@{witness_key}",
        "--state",
        str(witness.state),
        "--submit",
    )
    assert "accepted and cosigned checkpoint" in capsys.readouterr().out
    assert Cosignature.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_history_rewritten_and_resigned_with_a_stolen_key_raises_the_alarm(
    history, witness, capsys
):
    """The DBA rewrites an entry, re-hashes the object's chain, rebuilds the tree, deletes
    the checkpoints and lets the log go on, signed with the (stolen) log key: every stored
    thing agrees, but the new tree does not extend the one the witness cosigned."""
    witness()
    accepted = witness.accepted()
    rewrite_chain("ledger.transaction", str(history.pk), {"amount": "1"}, from_position=1)
    _rebuild_tree()
    with triggers_dropped():
        raw("DELETE FROM audit_cosignature")
        raw("DELETE FROM audit_checkpoint")
    refund_create(payment=Transaction.objects.get(pk=history.pk), amount=1)  # the log goes on
    sequence()  # appends and signs with the log's key: the rewritten history
    assert Checkpoint.objects.get().size > accepted["size"]
    assert verify_log(reconcile=False).ok  # the DBA made every stored thing agree...
    capsys.readouterr()
    with pytest.raises(SystemExit) as alarm:
        witness()  # ...but the witness remembers what it cosigned
    assert alarm.value.code == 3
    err = capsys.readouterr().err
    assert f"ALARM: audit log fork: checkpoint {Checkpoint.objects.get().size} is not " in err
    assert f"is not consistent with the accepted {accepted['size']}" in err
    assert witness.metric("payflow_audit_witness_alarm") == 1
    assert witness.metric("payflow_audit_witness_accepted_size") is None
    assert witness.accepted() == accepted  # it never accepts the fork
    assert not Cosignature.objects.exists()  # nor cosigns it


@pytest.mark.django_db(transaction=True)
def test_another_tree_of_the_same_size_raises_the_alarm(history, witness, capsys):
    witness()
    size = witness.accepted()["size"]
    rewrite_chain("ledger.transaction", str(history.pk), {"amount": "1"}, from_position=1)
    _resign(size)
    with pytest.raises(SystemExit) as alarm:
        witness()
    assert alarm.value.code == 3
    assert f"two different trees of size {size}" in capsys.readouterr().err
    assert witness.metric("payflow_audit_witness_alarm") == 1


@pytest.mark.django_db(transaction=True)
def test_a_log_rolled_back_to_a_smaller_tree_raises_the_alarm(history, witness, capsys):
    witness()
    size = witness.accepted()["size"]
    _resign(size - 1)  # a valid, signed, older view of the log
    with pytest.raises(SystemExit) as alarm:
        witness()
    assert alarm.value.code == 3
    assert f"the log shrank from {size} to {size - 1}" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_not_signed_by_the_logs_key_raises_the_alarm(history, witness, capsys):
    witness()
    impostor = tlog.Signer(tlog.generate_signer_key(ORIGIN))  # same name, another key
    _resign(witness.accepted()["size"], signer=impostor)
    with pytest.raises(SystemExit) as alarm:
        witness()
    assert alarm.value.code == 3
    assert "the log's checkpoint is not signed by its key" in capsys.readouterr().err
    assert witness.metric("payflow_audit_witness_alarm") == 1


@pytest.mark.django_db(transaction=True)
def test_a_log_that_does_not_answer_is_an_error_not_an_alarm(witness, tmp_path):
    with pytest.raises(CommandError, match="the log did not answer usefully"):
        witness()  # no checkpoint yet: the endpoint answers 404
    assert not witness.state.exists()
    witness.url = "http://127.0.0.1:9/audit/log/"  # nothing listens there
    with pytest.raises(CommandError, match="the log did not answer usefully"):
        witness()
    assert not witness.state.exists()
    assert not witness.metrics.exists()  # no alarm: an outage is not a fork


def test_the_witness_refuses_to_start_with_an_unusable_key(tmp_path):
    common = ["--once", "--log-url", "http://127.0.0.1:9/", "--state", str(tmp_path / "s")]
    witness_key = tlog.generate_witness_key("witness.test/w1")
    for log_key, own_key in (
        ("not a key", witness_key),
        (settings.AUDIT_PUBLIC_KEY, TEST_SIGNER_KEY),  # the log's key is not a witness key
        (tlog.WitnessSigner(witness_key).verifier_key(), witness_key),  # nor the reverse
        (f"@{tmp_path / 'missing.vkey'}", witness_key),
    ):
        with pytest.raises(CommandError, match="cannot start the witness") as refused:
            call_command(
                "audit_witness", *common, "--public-key", log_key, "--witness-key", own_key
            )
        assert TEST_SIGNER_KEY.split("+", 4)[4] not in str(refused.value)


def _get(live_server, path):
    import urllib.request

    url = f"{live_server.url}/audit/log/{path}"  # http, on loopback
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310
        return answer.read().decode()


def _resign(size, signer=None):
    """As a DBA with the log's key (or another): replace every checkpoint by one of the
    stored tree at ``size``."""
    root = tlog.root_at(size, log_nodes) if size < _log_size() else _rebuild_tree().root()
    note = tlog.sign_note(tlog.checkpoint_body(ORIGIN, size, root), signer or _log_signer())
    with triggers_dropped():
        raw("DELETE FROM audit_cosignature")
        raw("DELETE FROM audit_checkpoint")
    Checkpoint.objects.create(size=size, root=root.hex(), note=note, created_at=timezone.now())


def _log_size():
    return LogLeaf.objects.count()


def _log_signer():
    return tlog.Signer(TEST_SIGNER_KEY)


# --- the endpoint: answers and bad input --------------------------------------------------


def error_of(response, status):
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message"}
    assert body["error"]["message"]
    return body["error"]["message"]


def test_no_checkpoint_yet_is_404(client, db):
    assert "no checkpoint yet" in error_of(client.get("/audit/log/checkpoint"), 404)
    assert "no checkpoint of size 1" in error_of(client.get("/audit/log/checkpoint/1"), 404)


def test_checkpoints_by_size_and_the_latest(client, merchant):
    pay(merchant)
    sequence()
    first = Checkpoint.objects.get()
    pay(merchant, amount=5)
    sequence()
    latest = Checkpoint.objects.order_by("-size").first()
    assert client.get("/audit/log/checkpoint").content.decode() == latest.note
    assert client.get(f"/audit/log/checkpoint/{first.size}").content.decode() == first.note
    for size in (first.size + 1, 99999999999999999999999999):
        assert "no checkpoint of size" in error_of(client.get(f"/audit/log/checkpoint/{size}"), 404)
    assert client.post("/audit/log/checkpoint").status_code == 405


def test_proofs_from_the_endpoint_verify_against_the_signed_roots(client, merchant):
    pay(merchant)
    sequence()
    old = Checkpoint.objects.get()
    pay(merchant, amount=5)
    sequence()
    new = Checkpoint.objects.order_by("-size").first()
    answer = client.get("/audit/log/proof/consistency", {"from": old.size, "to": new.size}).json()
    assert (answer["from"], answer["to"]) == (old.size, new.size)
    proof = [base64.b64decode(node) for node in answer["proof"]]
    assert merkle.verify_consistency(
        old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root), proof
    )
    for index, entry_id in LogLeaf.objects.values_list("index", "entry_id"):
        answer = client.get("/audit/log/proof/inclusion", {"index": index, "size": new.size})
        answer = answer.json()
        digest = bytes.fromhex(AuditEntry.objects.get(pk=entry_id).hash)
        assert base64.b64decode(answer["leaf_hash"]) == tlog.leaf_hash_of_entry(digest)
        path = [base64.b64decode(node) for node in answer["proof"]]
        assert merkle.verify_inclusion(digest, index, new.size, path, bytes.fromhex(new.root))


@pytest.mark.parametrize(
    "query",
    [
        "",
        "from=1",
        "to=1",
        "from=&to=1",
        "from=-1&to=2",
        "from=1&to=-2",
        "from=0&to=1",
        "from=2&to=1",
        "from=1.5&to=2",
        "from=1&to=2e3",
        "from=+1&to=2",
        "from=%201&to=2",
        "from=0x1&to=2",
        "from=%C2%B2&to=3",  # a superscript two: str.isdigit() says yes, int() says no
        "from=%D9%A1&to=3",  # an Arabic-Indic one
        f"from=1&to={'9' * 20}",
        f"from={'9' * 40}&to={'9' * 41}",
        "from=1&to=1&from=x",
    ],
)
def test_bad_consistency_parameters_are_400(client, merchant, query):
    pay(merchant)
    sequence()
    assert "0 < from <= to" in error_of(client.get(f"/audit/log/proof/consistency?{query}"), 400)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "index=0",
        "size=1",
        "index=-1&size=1",
        "index=0&size=-1",
        "index=1&size=1",
        "index=5&size=2",
        "index=0&size=0",
        "index=a&size=1",
        "index=%C2%B2&size=3",
        f"index=0&size={'9' * 20}",
        f"index={'9' * 30}&size={'9' * 31}",
    ],
)
def test_bad_inclusion_parameters_are_400(client, merchant, query):
    pay(merchant)
    sequence()
    assert "0 <= index < size" in error_of(client.get(f"/audit/log/proof/inclusion?{query}"), 400)


def test_sizes_beyond_the_log_are_404(client, merchant):
    pay(merchant)
    sequence()
    size = Checkpoint.objects.get().size
    for path, query in (
        ("consistency", {"from": 1, "to": size + 1}),
        ("consistency", {"from": size + 1, "to": size + 1}),
        ("consistency", {"from": 1, "to": "9" * 19}),
        ("inclusion", {"index": 0, "size": size + 1}),
        ("inclusion", {"index": size, "size": size + 1}),
        ("inclusion", {"index": 0, "size": "9" * 19}),
    ):
        message = error_of(client.get(f"/audit/log/proof/{path}", query), 404)
        assert "the log is smaller than" in message
    assert (
        client.get("/audit/log/proof/inclusion", {"index": size - 1, "size": size}).status_code
        == 200
    )


def test_an_empty_log_has_no_proofs(client, db):
    error_of(client.get("/audit/log/proof/consistency", {"from": 1, "to": 1}), 404)
    error_of(client.get("/audit/log/proof/inclusion", {"index": 0, "size": 1}), 404)


# --- posted cosignatures ------------------------------------------------------------------


@pytest.fixture
def known_witness(settings):
    key = tlog.generate_witness_key("witness.test/w1")
    settings.AUDIT_WITNESS_KEYS = [tlog.WitnessSigner(key).verifier_key()]
    return tlog.WitnessSigner(key)


@pytest.fixture
def checkpoint(merchant):
    pay(merchant)
    sequence()
    return Checkpoint.objects.get()


def post(client, text):
    data = text.encode() if isinstance(text, str) else text
    return client.post("/audit/log/cosignature", data, content_type="text/plain")


def test_a_known_witnesss_cosignature_is_stored_once(client, known_witness, checkpoint):
    cosigned = tlog.add_cosignature(checkpoint.note, known_witness, 1_800_000_000)
    for _ in range(2):  # a witness retrying is harmless
        answer = post(client, cosigned)
        assert answer.status_code == 200
        assert answer.json() == {"size": checkpoint.size, "cosigned_by": ["witness.test/w1"]}
    stored = Cosignature.objects.get()
    assert stored.signed_at.timestamp() == 1_800_000_000
    assert stored.line == cosigned.splitlines()[-1]


def test_a_cosignature_from_an_unknown_witness_is_refused(client, known_witness, checkpoint):
    stranger = tlog.WitnessSigner(tlog.generate_witness_key("stranger.test/w9"))
    message = error_of(post(client, tlog.add_cosignature(checkpoint.note, stranger, 1)), 400)
    assert "no cosignature of a known witness" in message
    # a key named like the known witness, but another key: unknown too
    impostor = tlog.WitnessSigner(tlog.generate_witness_key("witness.test/w1"))
    error_of(post(client, tlog.add_cosignature(checkpoint.note, impostor, 1)), 400)
    assert not Cosignature.objects.exists()


def test_a_cosignature_that_does_not_verify_is_refused(client, known_witness, checkpoint):
    cosigned = tlog.add_cosignature(checkpoint.note, known_witness, 1_800_000_000)
    line = cosigned.splitlines()[-1]
    name, encoded = line[2:].split(" ")
    raw_signature = bytearray(base64.b64decode(encoded))
    forgeries = []
    raw_signature[-1] ^= 1  # the signature itself
    forgeries.append(bytes(raw_signature))
    raw_signature[-1] ^= 1
    raw_signature[4 + 7] ^= 1  # the timestamp it signed
    forgeries.append(bytes(raw_signature))
    forgeries.append(bytes(raw_signature[:40]))  # too short
    for forged in forgeries:
        text = checkpoint.note + f"— {name} {base64.b64encode(forged).decode()}\n"
        assert "do not verify" in error_of(post(client, text), 400)
    # a cosignature of another checkpoint body, pasted under this one
    other = tlog.checkpoint_body(ORIGIN, checkpoint.size, bytes(32))
    elsewhere = tlog.add_cosignature(tlog.sign_note(other, _log_signer()), known_witness, 5)
    text = checkpoint.note + elsewhere.splitlines()[-1] + "\n"
    assert "do not verify" in error_of(post(client, text), 400)
    assert not Cosignature.objects.exists()


def test_a_cosignature_time_no_calendar_can_hold_is_refused_not_a_crash(
    client, known_witness, checkpoint
):
    for timestamp in (2**63, 2**64 - 1):
        cosigned = tlog.add_cosignature(checkpoint.note, known_witness, timestamp)
        assert "out of range" in error_of(post(client, cosigned), 400)
    assert not Cosignature.objects.exists()


def test_a_note_that_is_not_a_checkpoint_of_this_log_is_refused(client, known_witness, checkpoint):
    foreign = tlog.Signer(tlog.generate_signer_key("other.example/log"))
    other_key = tlog.Signer(tlog.generate_signer_key(ORIGIN))
    body = tlog.checkpoint_body(ORIGIN, checkpoint.size, bytes.fromhex(checkpoint.root))
    for text in (
        b"",
        b"\xff\xfe not utf-8",
        "not a note",
        checkpoint.note.rstrip("\n"),
        checkpoint.note.replace("\n", "\r\n"),
        checkpoint.note.replace(ORIGIN + "\n", ORIGIN + " \n", 1),  # signed text changed
        tlog.sign_note(tlog.checkpoint_body("other.example/log", 1, bytes(32)), foreign),
        tlog.sign_note(body, other_key),  # the log's name, not its key
        tlog.add_cosignature(tlog.sign_note(body, other_key), known_witness, 1),
    ):
        assert "not a checkpoint of this log" in error_of(post(client, text), 400)
    assert not Cosignature.objects.exists()


def test_a_signed_checkpoint_the_log_never_had_is_404(client, known_witness, checkpoint):
    for size, root in (
        (checkpoint.size, bytes(32)),
        (checkpoint.size + 5, bytes.fromhex(checkpoint.root)),
    ):
        note = tlog.sign_note(tlog.checkpoint_body(ORIGIN, size, root), _log_signer())
        cosigned = tlog.add_cosignature(note, known_witness, 1)
        assert "no such checkpoint" in error_of(post(client, cosigned), 404)
    assert not Cosignature.objects.exists()


def test_a_note_over_64_kib_is_413_and_get_is_405(client, known_witness, checkpoint):
    padding = "— x " + "A" * 100 + "\n"
    huge = checkpoint.note + padding * 700
    assert "64 KiB" in error_of(post(client, huge), 413)
    assert client.get("/audit/log/cosignature").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_stored_cosignatures_and_retention_records_cannot_be_changed_in_mariadb(
    client, known_witness, checkpoint
):
    post(client, tlog.add_cosignature(checkpoint.note, known_witness, 1_800_000_000))
    with connection.cursor() as cursor:
        for statement in (
            "UPDATE audit_cosignature SET line = 'x'",
            "DELETE FROM audit_cosignature",
        ):
            with pytest.raises(DatabaseError, match="immutable"):
                cursor.execute(statement)
        cursor.execute(
            "SELECT event_object_table, event_manipulation FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE() "
            "AND event_object_table IN ('audit_cosignature', 'audit_retentionpurge')"
        )
        assert sorted(cursor.fetchall()) == [
            ("audit_cosignature", "DELETE"),
            ("audit_cosignature", "UPDATE"),
            ("audit_retentionpurge", "DELETE"),
            ("audit_retentionpurge", "UPDATE"),
        ]
    assert Cosignature.objects.count() == 1


# --- notes, keys and cosignatures (the formats of docs/audit-formats.md §3-§4) ------------

SECRET = TEST_SIGNER_KEY.split("+", 4)[4]  # b64(0x01 ‖ seed), may itself hold '+'
SIGNER_PREFIX = "+".join(TEST_SIGNER_KEY.split("+", 4)[:4])

# RFC 8032 §7.1, TEST 1: the secret key, its public key, and the signature of "".
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9"
    "b46bd25bf5f0595bbe24655141438e7a100b"
)


def signer_text(name, seed, alg=tlog.ALG_ED25519):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    identifier = tlog.key_id(name, alg, public).hex()
    return f"PRIVATE+KEY+{name}+{identifier}+{base64.b64encode(bytes([alg]) + seed).decode()}"


def test_the_log_key_is_rfc8032_ed25519_with_the_signed_note_key_id():
    signer = tlog.Signer(signer_text("rfc.test/log", RFC_SEED))
    assert signer.public == RFC_PUBLIC
    assert signer.sign(b"") == RFC_SIGNATURE
    assert signer.key_id == hashlib.sha256(b"rfc.test/log\n\x01" + RFC_PUBLIC).digest()[:4]
    verifier_key = signer.verifier_key()
    encoded = base64.b64encode(b"\x01" + RFC_PUBLIC).decode()
    assert verifier_key == f"rfc.test/log+{signer.key_id.hex()}+{encoded}"
    assert tlog.Verifier(verifier_key).public == RFC_PUBLIC


def test_the_test_logs_signer_key_matches_the_configured_public_key():
    assert tlog.Signer(TEST_SIGNER_KEY).verifier_key() == settings.AUDIT_PUBLIC_KEY
    assert "PRIVATE" not in settings.AUDIT_PUBLIC_KEY


def test_a_checkpoint_note_is_the_body_a_blank_line_and_an_ed25519_signature_of_the_body():
    signer = tlog.Signer(TEST_SIGNER_KEY)
    root = bytes(range(32))
    body = tlog.checkpoint_body(ORIGIN, 42, root)
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(root).decode()}\n"
    note = tlog.sign_note(body, signer)
    assert note.startswith(body + "\n— payflow.test/audit ")
    raw_signature = base64.b64decode(note.splitlines()[-1].split(" ")[2])
    assert raw_signature[:4] == signer.key_id
    Ed25519PublicKey.from_public_bytes(signer.public).verify(raw_signature[4:], body.encode())
    verified = tlog.verify_note(note, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    assert (verified.origin, verified.size, verified.root) == (ORIGIN, 42, root)


def test_flipping_any_bit_of_the_signed_body_breaks_the_note():
    body = tlog.checkpoint_body(ORIGIN, 1234, bytes(range(32)))
    note = tlog.sign_note(body, tlog.Signer(TEST_SIGNER_KEY))
    verifier = tlog.Verifier(settings.AUDIT_PUBLIC_KEY)
    encoded = note.encode()
    for position in range(len(body.encode())):
        for bit in range(8):
            altered = bytearray(encoded)
            altered[position] ^= 1 << bit
            try:
                text = altered.decode()
            except UnicodeDecodeError:
                continue
            with pytest.raises(tlog.NoteError):
                tlog.verify_note(text, verifier)


def test_a_note_verifies_with_the_logs_key_only():
    body = tlog.checkpoint_body(ORIGIN, 3, bytes(32))
    note = tlog.sign_note(body, tlog.Signer(TEST_SIGNER_KEY))
    verifier = tlog.Verifier(settings.AUDIT_PUBLIC_KEY)
    line = note.splitlines()[-1]
    name, encoded = line[2:].split(" ")
    raw_signature = bytearray(base64.b64decode(encoded))
    other_id = bytes(raw_signature)
    other_id = bytes([other_id[0] ^ 1]) + other_id[1:]
    flipped = bytearray(raw_signature)
    flipped[10] ^= 1
    other_log = tlog.Signer(tlog.generate_signer_key(ORIGIN))
    for forged in (
        note.replace(line, f"— {name} {base64.b64encode(bytes(flipped)).decode()}"),
        note.replace(line, f"— {name} {base64.b64encode(other_id).decode()}"),  # other key id
        note.replace(line, f"— other.example/log {encoded}"),
        tlog.sign_note(body, other_log),
        note.replace(line, line + f"\n— {name} {base64.b64encode(bytes(flipped)).decode()}"),
    ):
        with pytest.raises(tlog.NoteError):
            tlog.verify_note(forged, verifier)
    # lines of other keys are ignored: a note may carry cosignatures
    witness = tlog.WitnessSigner(tlog.generate_witness_key("witness.test/w1"))
    assert tlog.verify_note(tlog.add_cosignature(note, witness, 7), verifier).size == 3


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n012\n{base64.b64encode(bytes(32)).decode()}\n",  # a leading zero
        f"{ORIGIN}\n+12\n{base64.b64encode(bytes(32)).decode()}\n",
        f"{ORIGIN}\n{'9' * 21}\n{base64.b64encode(bytes(32)).decode()}\n",
        f"{ORIGIN}\n12\n{base64.b64encode(bytes(31)).decode()}\n",  # not a SHA-256 root
        f"{ORIGIN}\n12\n{base64.b64encode(bytes(32)).decode().rstrip('=')}\n",  # no padding
        f"{ORIGIN}\n12\n{base64.b64encode(bytes(32)).decode()}\nextension\n",
        f"{ORIGIN}\n12\n",
        f"\n12\n{base64.b64encode(bytes(32)).decode()}\n",
        f"other.example/log\n12\n{base64.b64encode(bytes(32)).decode()}\n",
    ],
)
def test_a_checkpoint_that_could_be_written_another_way_is_refused(body):
    """A signed checkpoint has one spelling: whatever else the log's key signed is refused."""
    note = tlog.sign_note(body, tlog.Signer(TEST_SIGNER_KEY))
    with pytest.raises(tlog.NoteError):
        tlog.verify_note(note, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))


def test_a_cosignature_signs_the_time_and_the_body_with_the_witness_key():
    body = tlog.checkpoint_body(ORIGIN, 9, bytes(32))
    note = tlog.sign_note(body, tlog.Signer(TEST_SIGNER_KEY))
    witness = tlog.WitnessSigner(signer_text("witness.test/w1", RFC_SEED, tlog.ALG_COSIGNATURE_V1))
    cosigned = tlog.add_cosignature(note, witness, 1_700_000_000)
    line = cosigned.splitlines()[-1]
    assert cosigned == note + line + "\n"
    assert line.startswith("— witness.test/w1 ")
    raw_signature = base64.b64decode(line.split(" ")[2])
    assert len(raw_signature) == 4 + 8 + 64
    assert raw_signature[:4] == hashlib.sha256(b"witness.test/w1\n\x04" + RFC_PUBLIC).digest()[:4]
    assert struct.unpack(">Q", raw_signature[4:12]) == (1_700_000_000,)
    Ed25519PublicKey.from_public_bytes(RFC_PUBLIC).verify(
        raw_signature[12:], f"cosignature/v1\ntime 1700000000\n{body}".encode()
    )
    known = [tlog.WitnessVerifier(witness.verifier_key())]
    assert tlog.verify_cosignatures(cosigned, known).valid == [
        ("witness.test/w1", 1_700_000_000, line)
    ]
    # the same Ed25519 key as a log key (0x01) is another key: its lines are not cosignatures
    as_log_key = tlog.Signer(signer_text("witness.test/w1", RFC_SEED))
    assert as_log_key.key_id != witness.key_id
    signed_by_it = note + tlog.sign_note(body, as_log_key).splitlines()[-1] + "\n"
    assert tlog.verify_cosignatures(signed_by_it, known).valid == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "PRIVATE+KEY+payflow.test/audit+fe41b70c",
        TEST_SIGNER_KEY.replace("fe41b70c", "fe41b70d"),  # the key id of another key
        TEST_SIGNER_KEY.replace("payflow.test/audit", "payflow.test/other"),
        TEST_SIGNER_KEY.replace("PRIVATE+KEY+", "PRIVATE+KEY+with space+"),
        TEST_SIGNER_KEY[:-4] + "====",
        f"{SIGNER_PREFIX}+{base64.b64encode(bytes([1]) + bytes(31)).decode()}",  # 31 bytes
        f"{SIGNER_PREFIX}+{base64.b64encode(bytes([4]) + bytes(32)).decode()}",  # a witness's
    ],
)
def test_a_malformed_signer_key_is_refused_without_showing_its_secret(text):
    with pytest.raises(tlog.KeyFormatError) as refused:
        tlog.Signer(text)
    assert SECRET not in str(refused.value)
    assert base64.b64decode(SECRET)[1:].hex() not in str(refused.value)


def test_an_answer_cut_short_is_an_error_not_a_crash(witness):
    """Found by the drills (issue 19): a gunicorn worker killed while it sent a
    checkpoint left the witness with ``http.client.IncompleteRead``, and it exited with a
    traceback instead of asking again on its next poll."""

    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "711")
            self.end_headers()
            self.wfile.write(b"payflow.test/audit\n")  # then the connection closes

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), CutShort)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        witness.url = f"http://127.0.0.1:{server.server_port}/audit/log/"
        with pytest.raises(CommandError, match="the log did not answer usefully"):
            witness()
    finally:
        server.shutdown()
    assert not witness.state.exists()
