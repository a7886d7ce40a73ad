"""The card vault: tokenization, AES-256-GCM sealing, tampering, key rotation, the PAN scan.

Transactional tests throughout: decryption refuses to run inside a transaction, and the
signal tests need to see the service's own transaction, not the test's.
"""

import datetime
import hashlib
import hmac
import json
import logging
import pickle
import threading

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import connection, connections
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ledger import vault
from ledger.exceptions import InvalidCard, MerchantInactive, VaultError, VaultKeyUnavailable
from ledger.models import CardToken
from ledger.models.vault import VaultKey
from ledger.services import vault as vault_services
from ledger.services.merchants import merchant_create, merchant_suspend
from ledger.services.vault import (
    card_tokenize,
    vault_keys_register,
    vault_reencrypt_batch,
    vault_rotation_status,
)
from ledger.signals import ledger_changed
from ledger.tasks import vault_reencrypt, vault_rotation_check
from payflow.platform import context, db
from payflow.platform.guards import UnsanctionedWrite, sanctioned_writes
from tests.pan_scan import find_pans_in_database, find_pans_in_text

pytestmark = pytest.mark.django_db(transaction=True)

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(100, 132))
KEY_3 = bytes(range(200, 232))

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
# The public test cards of DESIGN.md and the brands' own test numbers.
PUBLIC_TEST_CARDS = [
    VISA,
    "4000000000000002",
    "4000000000009995",
    "4000000000000069",
    "4000000000000127",
    "4000000000000119",
    "4000056655665556",
    MASTERCARD,
    "2223003122003222",
    "5200828282828210",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "3056930009020004",
    "36227206271667",
    "3566002020360505",
]


def tokenize(merchant, number=VISA, exp_month=12, exp_year=2034, holder_name="") -> CardToken:
    return card_tokenize(
        merchant=merchant,
        number=number,
        exp_month=exp_month,
        exp_year=exp_year,
        holder_name=holder_name,
    )


def stored(token: CardToken) -> CardToken:
    return CardToken.objects.get(pk=token.pk)


def overwrite(token: CardToken, **fields) -> CardToken:
    """Change a stored token behind the services' back (an attacker or a bug)."""
    with sanctioned_writes():
        CardToken.objects.filter(pk=token.pk).update(**fields)
    return stored(token)


def flip_bit(data: bytes, index: int = 0) -> bytes:
    data = bytearray(data)
    data[index] ^= 0x01
    return bytes(data)


def key_versions() -> dict[int, int]:
    counts: dict[int, int] = {}
    for version in CardToken.objects.values_list("key_version", flat=True):
        counts[version] = counts.get(version, 0) + 1
    return counts


# --- tokenization ---------------------------------------------------------------------


def test_a_tokenized_card_keeps_brand_last4_expiry_and_fingerprint_and_seals_the_rest(
    merchant,
):
    # when
    token = tokenize(merchant, "4242 4242 4242 4242", "03", 34, holder_name="  Marie   Curie ")

    # then the columns hold what may be shown, the ciphertext the rest
    row = stored(token)
    assert (row.merchant_id, row.brand, row.last4, row.exp_month, row.exp_year) == (
        merchant.pk,
        "visa",
        "4242",
        3,
        2034,
    )
    assert row.key_version == vault.current_key_version() == 2
    assert len(row.nonce) == 12
    assert len(row.ciphertext) > 16
    assert row.version == 1
    assert row.fingerprint == vault.fingerprint(merchant.pk, VISA)
    revealed = vault.reveal_card_for_acquirer(row)
    assert (revealed.pan, revealed.holder_name, revealed.brand) == (VISA, "Marie Curie", "visa")
    assert (revealed.exp_month, revealed.exp_year, revealed.token_id) == (3, 2034, token.pk)


def test_the_sealed_document_is_aes_256_gcm_bound_to_token_id_and_key_version(merchant):
    # given a token sealed under version 2 of the test keyring
    row = stored(tokenize(merchant, MASTERCARD, holder_name="Ada"))

    # when it is opened with the library directly and the documented associated data
    associated_data = b"payflow/card-token/v1\x00" + row.pk.bytes + (2).to_bytes(4, "big")
    key = vault.keyring()[2]
    plaintext = AESGCM(key).decrypt(bytes(row.nonce), bytes(row.ciphertext), associated_data)

    # then it is the PAN and the holder name, nothing else
    assert json.loads(plaintext) == {"name": "Ada", "pan": MASTERCARD}


def test_the_same_card_twice_gets_two_tokens_with_one_fingerprint_per_merchant(
    merchant, other_merchant, settings
):
    first = tokenize(merchant, VISA)
    second = tokenize(merchant, "4242-4242-4242-4242", exp_year=2030)
    elsewhere = tokenize(other_merchant, VISA)
    other_card = tokenize(merchant, MASTERCARD)

    assert first.pk != second.pk
    assert first.fingerprint == second.fingerprint
    assert elsewhere.fingerprint != first.fingerprint
    assert other_card.fingerprint != first.fingerprint
    # HMAC-SHA256 over label, merchant id and PAN: pinned, since changing it would make
    # every stored fingerprint stop matching new tokens of the same card
    expected = hmac.new(
        settings.CARD_FINGERPRINT_KEY,
        b"payflow/card-fingerprint/v1\x00" + merchant.pk.bytes + VISA.encode(),
        hashlib.sha256,
    ).hexdigest()
    assert first.fingerprint == expected
    assert list(
        CardToken.objects.filter(merchant=merchant, fingerprint=first.fingerprint)
        .order_by("pk")
        .values_list("pk", flat=True)
    ) == [first.pk, second.pk]


def test_every_sealing_draws_a_fresh_nonce(merchant):
    tokens = [stored(tokenize(merchant, VISA)) for _ in range(5)]

    assert len({bytes(token.nonce) for token in tokens}) == 5
    assert len({bytes(token.ciphertext) for token in tokens}) == 5
    # and encrypting the same fields for the same id twice differs too
    token_id = db.uuid7()
    assert vault.encrypt(token_id, {"pan": VISA}) != vault.encrypt(token_id, {"pan": VISA})


def test_an_invalid_card_is_refused_and_nothing_is_stored(merchant, recorded):
    with pytest.raises(InvalidCard) as caught:
        tokenize(merchant, "4242424242424241")

    assert caught.value.param == "card[number]"
    assert CardToken.objects.count() == 0
    assert [event for event in recorded if event["event_type"].startswith("card_token")] == []


def test_a_holder_name_over_100_characters_is_refused(merchant):
    with pytest.raises(InvalidCard) as caught:
        tokenize(merchant, holder_name="x" * 101)

    assert (caught.value.param, caught.value.message) == (
        "card[name]",
        "the cardholder name is at most 100 characters",
    )
    assert CardToken.objects.count() == 0
    longest = tokenize(merchant, holder_name="é" * 100)
    assert vault.reveal_card_for_acquirer(longest).holder_name == "é" * 100


def test_a_suspended_merchant_cannot_tokenize(merchant, recorded):
    # given a merchant suspended after the caller loaded it
    merchant_suspend(merchant=merchant)
    recorded.clear()

    # when / then: the status is read again inside the transaction
    with pytest.raises(MerchantInactive):
        tokenize(merchant)
    assert CardToken.objects.count() == 0
    assert recorded == []


def test_tokenize_signals_card_token_created_inside_its_transaction_without_secrets(
    merchant, recorded
):
    recorded.clear()

    token = tokenize(merchant, MASTERCARD, holder_name="Grace Hopper")

    (event,) = recorded
    assert event["event_type"] == "card_token.created"
    assert event["action"] == "insert"
    assert event["in_transaction"] is True
    assert event["old"] is None
    assert event["new"] == {
        "id": str(token.pk),
        "merchant": str(merchant.pk),
        "livemode": False,
        "brand": "mastercard",
        "last4": "4444",
        "exp_month": 12,
        "exp_year": 2034,
        "fingerprint": token.fingerprint,
        "key_version": 2,
        "version": 1,
    }
    payload = json.dumps(event["new"])
    assert MASTERCARD not in payload
    assert "Grace" not in payload
    # the transaction was the service's own: none is open once it returned
    assert connection.in_atomic_block is False


def test_a_rolled_back_tokenize_leaves_no_row(merchant):
    # given a receiver that fails (as a failing audit write would)
    def failing_receiver(sender, event_type, **kwargs):
        if event_type == "card_token.created":
            raise RuntimeError("audit write failed")

    ledger_changed.connect(failing_receiver, dispatch_uid="test-failing-receiver")
    try:
        with pytest.raises(RuntimeError, match="audit write failed"):
            tokenize(merchant)
    finally:
        ledger_changed.disconnect(dispatch_uid="test-failing-receiver")

    # then the insert went with the transaction
    assert CardToken.objects.count() == 0


def test_tokenize_inside_a_caller_transaction_rolls_back_with_it(merchant):
    @db.atomic
    def tokenize_then_fail():
        tokenize(merchant)
        assert CardToken.objects.count() == 1
        raise LookupError("the caller failed later")

    with pytest.raises(LookupError):
        tokenize_then_fail()

    assert CardToken.objects.count() == 0


def test_a_card_token_cannot_be_changed_around_the_services(merchant):
    token = stored(tokenize(merchant))

    with pytest.raises(UnsanctionedWrite):
        CardToken.objects.filter(pk=token.pk).update(last4="0000")
    with pytest.raises(UnsanctionedWrite):
        CardToken.objects.filter(pk=token.pk).delete()
    token.last4 = "0000"
    with pytest.raises(UnsanctionedWrite):
        token.save()
    with pytest.raises(UnsanctionedWrite):
        token.delete()

    assert stored(token).last4 == "4242"
    assert stored(token).version == 1


# --- decryption and tampering ---------------------------------------------------------


def test_decryption_refuses_to_run_inside_a_transaction(merchant):
    token = stored(tokenize(merchant))
    revealed = []

    @db.atomic
    def reveal_inside():
        revealed.append(vault.reveal_card_for_acquirer(token))

    with pytest.raises(db.ExternalCallInTransaction):
        reveal_inside()
    assert revealed == []


def test_a_revealed_card_never_shows_its_pan(merchant):
    revealed = vault.reveal_card_for_acquirer(stored(tokenize(merchant, exp_month=3)))

    assert repr(revealed) == (
        f"RevealedCard(token_id={revealed.token_id}, brand=visa, pan=****4242, exp=03/2034)"
    )
    assert str(revealed) == repr(revealed)
    assert VISA not in f"{[revealed]} { ({'card': revealed}) }"
    with pytest.raises(TypeError, match="must not be serialized"):
        pickle.dumps(revealed)


def tamper_ciphertext(row):
    return overwrite(row, ciphertext=flip_bit(bytes(row.ciphertext), 3))


def tamper_tag(row):
    return overwrite(row, ciphertext=flip_bit(bytes(row.ciphertext), -1))


def truncate_ciphertext(row):
    return overwrite(row, ciphertext=bytes(row.ciphertext)[:-1])


def tamper_nonce(row):
    return overwrite(row, nonce=flip_bit(bytes(row.nonce)))


def relabel_key_version(row):
    return overwrite(row, key_version=1)  # version 1 exists too: a different key and AAD


@pytest.mark.parametrize(
    "tamper",
    [tamper_ciphertext, tamper_tag, truncate_ciphertext, tamper_nonce, relabel_key_version],
)
def test_a_tampered_token_fails_decryption_with_a_clear_error(merchant, tamper):
    # given a stored token altered in the database
    token = tamper(stored(tokenize(merchant)))

    # when / then
    with pytest.raises(VaultError) as caught:
        vault.reveal_card_for_acquirer(token)
    assert caught.value.message == (
        f"card token {token.pk} does not decrypt under key version {token.key_version}: its "
        "ciphertext, nonce, key version or token id has been altered"
    )
    assert caught.value.code == "vault_error"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_a_malformed_nonce_fails_decryption(merchant):
    token = overwrite(stored(tokenize(merchant)), nonce=b"short")

    with pytest.raises(VaultError, match="malformed nonce"):
        vault.reveal_card_for_acquirer(token)


def test_ciphertexts_swapped_between_two_tokens_decrypt_for_neither(merchant):
    # given two tokens whose sealed data was exchanged
    visa, mastercard = stored(tokenize(merchant, VISA)), stored(tokenize(merchant, MASTERCARD))
    visa_sealed = {"nonce": bytes(visa.nonce), "ciphertext": bytes(visa.ciphertext)}
    mastercard_sealed = {
        "nonce": bytes(mastercard.nonce),
        "ciphertext": bytes(mastercard.ciphertext),
    }
    visa = overwrite(visa, **mastercard_sealed)
    mastercard = overwrite(mastercard, **visa_sealed)

    # when / then: neither reveals the other's card
    for token in (visa, mastercard):
        with pytest.raises(VaultError, match=f"card token {token.pk} does not decrypt"):
            vault.reveal_card_for_acquirer(token)


def test_a_ciphertext_under_another_token_id_does_not_decrypt(merchant):
    original = stored(tokenize(merchant))
    impostor = CardToken(
        id=db.uuid7(),
        merchant=merchant,
        brand=original.brand,
        last4=original.last4,
        exp_month=original.exp_month,
        exp_year=original.exp_year,
        fingerprint=original.fingerprint,
        key_version=original.key_version,
        nonce=original.nonce,
        ciphertext=original.ciphertext,
    )

    with pytest.raises(VaultError, match=f"card token {impostor.pk} does not decrypt"):
        vault.reveal_card_for_acquirer(impostor)
    assert vault.reveal_card_for_acquirer(original).pan == VISA


def test_a_token_under_a_key_no_longer_in_the_keyring_gives_a_clear_error(merchant, settings):
    # given a token sealed under version 1, then version 1 removed without re-encryption
    settings.VAULT_KEYS = {1: KEY_1}
    token = stored(tokenize(merchant))
    settings.VAULT_KEYS = {2: KEY_2}

    # when / then
    with pytest.raises(VaultKeyUnavailable) as caught:
        vault.reveal_card_for_acquirer(token)
    assert caught.value.message == (
        f"card token {token.pk} is sealed under vault key version 1, which is not in "
        "VAULT_KEYS (configured versions: [2])"
    )
    assert isinstance(caught.value, VaultError)


def test_a_key_of_another_length_is_refused(merchant, settings):
    settings.VAULT_KEYS = {1: KEY_1, 2: b"sixteen byte key"}

    with pytest.raises(VaultError, match="VAULT_KEYS version 2 is not a 32-byte key"):
        tokenize(merchant)
    assert CardToken.objects.count() == 0


# --- key rotation ---------------------------------------------------------------------


def test_rotation_re_encrypts_every_token_and_every_token_decrypts_throughout(
    merchant, other_merchant, settings, recorded
):
    # given five tokens under key 1
    settings.VAULT_KEYS = {1: KEY_1}
    cards = [VISA, MASTERCARD, "378282246310005", "6011111111111117", "3566002020360505"]
    old = [tokenize(merchant if i % 2 else other_merchant, pan) for i, pan in enumerate(cards)]
    assert key_versions() == {1: 5}

    # when key 2 is added: it is current for new tokens, and the old ones still decrypt
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    new = tokenize(merchant, "5200828282828210")
    assert stored(new).key_version == 2
    assert key_versions() == {1: 5, 2: 1}

    def all_reveal() -> None:
        for token, pan in [*zip(old, cards, strict=True), (new, "5200828282828210")]:
            assert vault.reveal_card_for_acquirer(stored(token)).pan == pan

    all_reveal()

    # and a partial run moves two of them: both versions decrypt mid-way
    recorded.clear()
    first = vault_reencrypt_batch(batch_size=2)
    assert (first.reencrypted, first.skipped, first.failed) == (2, 0, 0)
    assert first.last_id == sorted(token.pk for token in old)[1]
    assert key_versions() == {1: 3, 2: 3}
    all_reveal()

    # and the rest follow, batch after batch
    second = vault_reencrypt_batch(batch_size=2, after=first.last_id)
    third = vault_reencrypt_batch(batch_size=2, after=second.last_id)
    done = vault_reencrypt_batch(batch_size=2, after=third.last_id)
    assert (second.reencrypted, third.reencrypted) == (2, 1)
    assert done == vault_services.ReencryptionBatch(0, 0, 0, None)
    assert key_versions() == {2: 6}
    assert vault_reencrypt_batch() == vault_services.ReencryptionBatch(0, 0, 0, None)
    all_reveal()

    # then each re-encryption was one compare-and-set with its signal
    assert sorted(stored(token).version for token in old) == [2] * 5
    assert [event["event_type"] for event in recorded] == ["card_token.reencrypted"] * 5
    assert all(event["in_transaction"] for event in recorded)
    assert {(e["old"]["key_version"], e["new"]["key_version"]) for e in recorded} == {(1, 2)}
    assert {(e["old"]["version"], e["new"]["version"]) for e in recorded} == {(1, 2)}
    assert sorted(e["new"]["id"] for e in recorded) == sorted(str(t.pk) for t in old)

    # and once key 1 is removed, everything still decrypts
    settings.VAULT_KEYS = {2: KEY_2}
    all_reveal()


def test_re_encryption_under_a_third_key_keeps_the_fingerprints(merchant, settings):
    settings.VAULT_KEYS = {1: KEY_1}
    token = stored(tokenize(merchant))
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2, 3: KEY_3}

    assert vault_reencrypt_batch().reencrypted == 1

    row = stored(token)
    assert (row.key_version, row.fingerprint, row.last4) == (3, token.fingerprint, "4242")
    assert bytes(row.nonce) != bytes(token.nonce)
    settings.VAULT_KEYS = {3: KEY_3}
    assert vault.reveal_card_for_acquirer(row).pan == VISA


def test_a_token_changed_meanwhile_is_skipped_not_overwritten(
    merchant, settings, monkeypatch, recorded
):
    # given a token under key 1 that another writer changes after the batch read it
    settings.VAULT_KEYS = {1: KEY_1}
    token = tokenize(merchant)
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    real_reseal = vault.reseal

    def reseal_while_someone_writes(row):
        with sanctioned_writes():
            CardToken.objects.filter(pk=row.pk).update(version=F("version") + 1)
        return real_reseal(row)

    monkeypatch.setattr(vault, "reseal", reseal_while_someone_writes)
    recorded.clear()

    # when
    batch = vault_reencrypt_batch()

    # then the compare-and-set lost: nothing written, no signal
    assert (batch.reencrypted, batch.skipped, batch.failed) == (0, 1, 0)
    assert (stored(token).key_version, stored(token).version) == (1, 2)
    assert recorded == []

    # and the next run picks it up
    monkeypatch.setattr(vault, "reseal", real_reseal)
    assert vault_reencrypt_batch().reencrypted == 1
    assert (stored(token).key_version, stored(token).version) == (2, 3)


def test_two_concurrent_rotation_runs_re_encrypt_each_token_once(
    merchant, settings, monkeypatch, recorded
):
    # given ten tokens under key 1
    settings.VAULT_KEYS = {1: KEY_1}
    tokens = [tokenize(merchant) for _ in range(10)]
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    recorded.clear()
    barrier = threading.Barrier(2, timeout=10)
    real_reseal_all = vault_services._reseal_all
    results, errors = [], []

    def reseal_all_then_wait(batch):
        resealed = real_reseal_all(batch)
        barrier.wait()  # both runs have read and re-sealed the same tokens
        return resealed

    actor = context.current()  # a new thread starts with an empty context

    def run():
        try:
            with context.replaced(actor):
                results.append(vault_reencrypt_batch(batch_size=50))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when two workers run the same batch at the same time
    monkeypatch.setattr(vault_services, "_reseal_all", reseal_all_then_wait)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then every token was re-encrypted by exactly one of them: both walk the batch in id
    # order, so the second waits on the first's row lock and then finds a newer version
    assert errors == []
    assert sorted((r.reencrypted, r.skipped, r.failed) for r in results) == [(0, 10, 0), (10, 0, 0)]
    assert key_versions() == {2: 10}
    assert sorted(stored(token).version for token in tokens) == [2] * 10
    assert len(recorded) == 10
    for token in tokens:
        assert vault.reveal_card_for_acquirer(stored(token)).pan == VISA


def test_a_token_that_does_not_decrypt_is_logged_and_left_while_the_others_rotate(
    merchant, settings, caplog
):
    # given three tokens under key 1, the middle one tampered with
    settings.VAULT_KEYS = {1: KEY_1}
    first, broken, last = sorted((tokenize(merchant) for _ in range(3)), key=lambda t: t.pk)
    tamper_ciphertext(stored(broken))
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}

    # when
    with caplog.at_level(logging.ERROR, logger="ledger.services.vault"):
        batch = vault_reencrypt_batch()

    # then the others moved on, the broken one stays as it was, named in the log
    assert (batch.reencrypted, batch.skipped, batch.failed) == (2, 0, 1)
    assert batch.last_id == last.pk
    assert [stored(t).key_version for t in (first, broken, last)] == [2, 1, 2]
    assert [record.getMessage() for record in caplog.records] == [
        f"vault re-encryption skipped card token {broken.pk}: card token {broken.pk} does "
        "not decrypt under key version 1: its ciphertext, nonce, key version or token id has "
        "been altered"
    ]
    # and a run resuming after the cursor does not loop on it
    assert vault_reencrypt_batch(after=batch.last_id).last_id is None


def test_tokens_under_a_removed_key_are_not_candidates_for_re_encryption(merchant, settings):
    settings.VAULT_KEYS = {1: KEY_1}
    orphan = tokenize(merchant)
    settings.VAULT_KEYS = {2: KEY_2, 3: KEY_3}
    current = tokenize(merchant)

    assert vault_reencrypt_batch().last_id is None
    assert stored(orphan).key_version == 1
    assert stored(current).key_version == 3
    assert vault_rotation_status().missing_key_versions == [1]


def test_the_reencrypt_task_runs_batches_until_none_is_left(merchant, settings):
    settings.VAULT_KEYS = {1: KEY_1}
    for _ in range(5):
        tokenize(merchant)
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}

    result = vault_reencrypt(batch_size=2)

    assert result == {"batches": 3, "reencrypted": 5, "skipped": 0, "failed": 0, "finished": True}
    assert key_versions() == {2: 5}


def test_the_reencrypt_task_stops_when_its_time_budget_is_spent(merchant, settings):
    settings.VAULT_KEYS = {1: KEY_1}
    tokenize(merchant)
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}

    result = vault_reencrypt(time_budget_seconds=0)

    assert result == {"batches": 0, "reencrypted": 0, "skipped": 0, "failed": 0, "finished": False}
    assert key_versions() == {1: 1}


@pytest.mark.celery_worker
def test_a_real_worker_re_encrypts_the_tokens_under_the_environment_keyring(
    merchant, settings, celery_worker_process
):
    # given tokens sealed while only key 1 of the suite's keyring (VAULT_KEYS {1, 2} in the
    # environment, which the worker process reads) was configured here
    environment_keys = dict(settings.VAULT_KEYS)
    settings.VAULT_KEYS = {1: environment_keys[1]}
    tokens = [tokenize(merchant, pan) for pan in (VISA, MASTERCARD, "378282246310005")]
    settings.VAULT_KEYS = environment_keys

    # when the task runs in the worker process
    result = vault_reencrypt.delay(batch_size=2).get(timeout=60)

    # then
    assert result == {"batches": 2, "reencrypted": 3, "skipped": 0, "failed": 0, "finished": True}
    assert key_versions() == {2: 3}
    assert [vault.reveal_card_for_acquirer(stored(t)).pan for t in tokens] == [
        VISA,
        MASTERCARD,
        "378282246310005",
    ]


# --- rotation check -------------------------------------------------------------------


def test_key_versions_are_registered_once_with_a_check_value_and_a_signal(settings, recorded):
    # given
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    now = timezone.now()

    # when
    first = vault_keys_register(now=now)
    again = vault_keys_register(now=now + datetime.timedelta(days=1))

    # then
    assert (first, again) == ([1, 2], [])
    keys = list(VaultKey.objects.order_by("version").values_list("version", "key_check"))
    assert keys == [
        (1, hmac.new(KEY_1, b"payflow/vault-key-check/v1", hashlib.sha256).hexdigest()[:16]),
        (2, hmac.new(KEY_2, b"payflow/vault-key-check/v1", hashlib.sha256).hexdigest()[:16]),
    ]
    assert {key.first_seen_at for key in VaultKey.objects.all()} == {now}
    assert [(e["event_type"], e["in_transaction"]) for e in recorded] == [
        ("vault_key.registered", True),
        ("vault_key.registered", True),
    ]
    assert KEY_2.hex() not in json.dumps([e["new"] for e in recorded], default=str)


def test_the_rotation_status_counts_tokens_per_key_version(merchant, settings):
    # given three tokens on key 1 and one on key 2, key 2 first seen 10 days ago
    settings.VAULT_KEYS = {1: KEY_1}
    for _ in range(3):
        tokenize(merchant)
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    tokenize(merchant)
    now = timezone.now()
    vault_keys_register(now=now - datetime.timedelta(days=10))

    # when
    status = vault_rotation_status(now=now)

    # then
    assert status == vault_services.VaultRotationStatus(
        current_key_version=2,
        configured_key_versions=[1, 2],
        tokens_by_key_version={1: 3, 2: 1},
        tokens_not_on_current_key=3,
        missing_key_versions=[],
        changed_key_versions=[],
        current_key_first_seen_at=now - datetime.timedelta(days=10),
        current_key_age_days=10,
        rotation_days=90,
        rotation_due=False,
    )


@pytest.mark.parametrize(
    ("age", "rotation_days", "due"),
    [
        (datetime.timedelta(days=89), 90, False),
        (datetime.timedelta(days=90), 90, False),
        (datetime.timedelta(days=90, seconds=1), 90, True),
        (datetime.timedelta(days=31), 30, True),
    ],
)
def test_rotation_is_due_once_the_current_key_is_older_than_the_limit(
    settings, age, rotation_days, due
):
    settings.VAULT_ROTATION_DAYS = rotation_days
    now = timezone.now()
    vault_keys_register(now=now - age)

    status = vault_rotation_status(now=now)

    assert (status.rotation_due, status.current_key_age_days) == (due, age.days)


def test_an_unregistered_current_key_has_no_age_and_is_not_reported_due(settings):
    status = vault_rotation_status()

    assert (status.current_key_first_seen_at, status.current_key_age_days) == (None, None)
    assert status.rotation_due is False


def test_a_key_whose_bytes_changed_under_the_same_version_is_reported(settings):
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    vault_keys_register()
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_3}

    assert vault_rotation_status().changed_key_versions == [2]


def test_the_rotation_check_task_registers_keys_and_warns_when_rotation_is_due(
    merchant, settings, caplog
):
    # given key 2 first seen 100 days ago and one token still on key 1
    settings.VAULT_KEYS = {1: KEY_1}
    tokenize(merchant)
    settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
    VaultKey.objects.create(
        version=2,
        key_check=vault.key_check_value(2),
        first_seen_at=timezone.now() - datetime.timedelta(days=100),
    )

    # when
    with caplog.at_level(logging.INFO, logger="ledger.tasks"):
        result = vault_rotation_check()

    # then version 1 was registered now, and the report says what is due
    assert list(VaultKey.objects.order_by("version").values_list("version", flat=True)) == [1, 2]
    assert result["current_key_version"] == 2
    assert result["tokens_by_key_version"] == {"1": 1}
    assert result["tokens_not_on_current_key"] == 1
    assert result["rotation_due"] is True
    assert result["current_key_age_days"] == 100
    json.dumps(result)  # a Celery result: JSON-safe
    assert [record.getMessage() for record in caplog.records] == [
        "vault key version 2 is 100 days old (rotation every 90 days): add a new version",
        "1 card tokens are not yet on vault key version 2",
    ]


# --- the PAN is nowhere but in the ciphertext ----------------------------------------


def test_the_pan_scan_finds_a_pan_wherever_it_is_stored(merchant):
    # given a PAN (wrongly) stored in plain text: a merchant name and a raw ciphertext column
    merchant_create(name=f"Shop 4242 4242 4242 4242 {MASTERCARD}")
    CardToken.objects.create(
        merchant=merchant,
        brand="visa",
        last4="0000",
        exp_month=1,
        exp_year=2030,
        fingerprint="",
        key_version=1,
        nonce=b"",
        ciphertext=b"\x00" + "5200828282828210".encode("utf-16-le"),
    )

    # when
    hits = find_pans_in_database([VISA, MASTERCARD, "5200828282828210", "378282246310005"])

    # then each is found where it is, in the form it has
    # (the audit entries record the merchants' names as they were created, in their bytes)
    assert [(hit.table, hit.column, hit.pan_last4, hit.form) for hit in hits] == [
        ("audit_auditentry", "body", "4242", "spaced"),
        ("audit_auditentry", "body", "4444", "digits"),
        ("ledger_cardtoken", "ciphertext", "8210", "utf-16"),
        ("ledger_merchant", "name", "4242", "spaced"),
        ("ledger_merchant", "name", "4444", "digits"),
    ]


def test_the_pan_is_never_in_any_column_except_the_ciphertext(
    merchant, other_merchant, settings, caplog, unredacted_logs
):
    # given every log record captured, unmasked, and every SQL statement logged
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    names = ["Alan Turing", "Ada Lovelace", "Grace Hopper"]
    with CaptureQueriesContext(connection) as queries:
        # when the public test cards are tokenized (plain, spaced, dashed), twice each
        # for two merchants, revealed for the acquirer, and re-encrypted under a new key
        settings.VAULT_KEYS = {1: KEY_1}
        tokens = []
        for index, pan in enumerate(PUBLIC_TEST_CARDS):
            written = [pan, " ".join(pan[i : i + 4] for i in range(0, len(pan), 4))][index % 2]
            tokens.append(tokenize(merchant, written, holder_name=names[index % 3]))
            tokens.append(tokenize(other_merchant, pan))
        settings.VAULT_KEYS = {1: KEY_1, 2: KEY_2}
        vault_keys_register()
        while vault_reencrypt_batch(batch_size=7).reencrypted:
            pass
        revealed = [vault.reveal_card_for_acquirer(stored(token)).pan for token in tokens]

    # then the tokens are all there and decrypt to the test cards
    assert sorted(set(revealed)) == sorted(PUBLIC_TEST_CARDS)
    assert key_versions() == {2: 2 * len(PUBLIC_TEST_CARDS)}
    # and no table holds a test PAN in any column, in any form, the ciphertext included
    assert find_pans_in_database(PUBLIC_TEST_CARDS) == []
    # and no SQL statement sent to the database carried one
    statements = "\n".join(query["sql"] for query in queries.captured_queries)
    assert len(queries.captured_queries) > 4 * len(PUBLIC_TEST_CARDS)
    assert find_pans_in_text(statements, PUBLIC_TEST_CARDS) == []
    # and no log record had one (the SQL log, with its parameters, was captured too)
    assert any(record.name == "django.db.backends" for record in caplog.records)
    assert find_pans_in_text(caplog.text, PUBLIC_TEST_CARDS) == []
    assert [
        record.name
        for record in caplog.records
        if find_pans_in_text(record.getMessage(), PUBLIC_TEST_CARDS)
    ] == []
