"""The log's read-only endpoint for witnesses and auditors (``/audit/log/…``).

Public by design, like a Certificate Transparency log: it serves signed checkpoints and
Merkle proofs, which are hashes, never entry contents. Witnesses poll it
(``manage.py audit_witness``) and send back their cosignatures, which are accepted only when
they verify with a key in ``AUDIT_WITNESS_KEYS`` (the signature is the authentication).

- ``GET checkpoint``: the latest checkpoint note, with every stored cosignature line;
- ``GET checkpoint/<size>``: the checkpoint of that size;
- ``GET proof/consistency?from=M&to=N``: ``{"from", "to", "proof": [b64 …]}``;
- ``GET proof/inclusion?index=I&size=N``: ``{"index", "size", "leaf_hash", "proof"}``;
- ``POST cosignature``: a checkpoint note carrying the witness's cosignature line.
"""

from __future__ import annotations

import base64
import datetime

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from audit import tlog
from audit.models import Checkpoint, Cosignature
from audit.sequencer import log_size, stored_nodes

MAX_NOTE = 64 * 1024


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": {"message": message}}, status=status)


def note_with_cosignatures(checkpoint: Checkpoint) -> str:
    """The checkpoint's note with every stored cosignature line appended."""
    lines = [cosignature.line for cosignature in checkpoint.cosignatures.order_by("id")]
    return checkpoint.note + "".join(line + "\n" for line in lines)


@require_GET
def checkpoint_latest(request: HttpRequest) -> HttpResponse:
    latest = Checkpoint.objects.order_by("-size").first()
    if latest is None:
        return _error(404, "the log has no checkpoint yet")
    return HttpResponse(note_with_cosignatures(latest), content_type="text/plain; charset=utf-8")


@require_GET
def checkpoint_at(request: HttpRequest, size: int) -> HttpResponse:
    found = Checkpoint.objects.filter(size=size).first()
    if found is None:
        return _error(404, f"no checkpoint of size {size}")
    return HttpResponse(note_with_cosignatures(found), content_type="text/plain; charset=utf-8")


def _int_param(request: HttpRequest, name: str) -> int | None:
    text = request.GET.get(name, "")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


@require_GET
def consistency(request: HttpRequest) -> HttpResponse:
    old, new = _int_param(request, "from"), _int_param(request, "to")
    if old is None or new is None or not 0 < old <= new:
        return _error(400, "give from and to, whole numbers with 0 < from <= to")
    if new > log_size():
        return _error(404, f"the log is smaller than {new}")
    proof = tlog.consistency_proof(old, new, stored_nodes)
    return JsonResponse(
        {"from": old, "to": new, "proof": [base64.b64encode(node).decode() for node in proof]}
    )


@require_GET
def inclusion(request: HttpRequest) -> HttpResponse:
    index, size = _int_param(request, "index"), _int_param(request, "size")
    if index is None or size is None or not 0 <= index < size:
        return _error(400, "give index and size, whole numbers with 0 <= index < size")
    if size > log_size():
        return _error(404, f"the log is smaller than {size}")
    proof = tlog.inclusion_proof(index, size, stored_nodes)
    leaf = stored_nodes([(0, index)]).get((0, index), b"")
    return JsonResponse(
        {
            "index": index,
            "size": size,
            "leaf_hash": base64.b64encode(leaf).decode(),
            "proof": [base64.b64encode(node).decode() for node in proof],
        }
    )


@csrf_exempt
@require_POST
def cosignature(request: HttpRequest) -> HttpResponse:
    """Store the cosignatures in a posted note that verify with a configured witness key."""
    if len(request.body) > MAX_NOTE:
        return _error(413, "a checkpoint note is at most 64 KiB")
    try:
        text = request.body.decode("utf-8")
        signed = tlog.verify_note(text, tlog.Verifier(settings.AUDIT_PUBLIC_KEY))
    except (UnicodeDecodeError, tlog.NoteError) as exc:
        return _error(400, f"not a checkpoint of this log: {exc}")
    checkpoint = Checkpoint.objects.filter(size=signed.size, root=signed.root.hex()).first()
    if checkpoint is None:
        return _error(404, "the log has no such checkpoint")
    witnesses = [tlog.WitnessVerifier(key) for key in settings.AUDIT_WITNESS_KEYS]
    result = tlog.verify_cosignatures(text, witnesses)
    times: dict[str, datetime.datetime] = {}
    for name, timestamp, _ in result.valid:
        try:
            times[name] = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
        except (OverflowError, OSError, ValueError):  # past year 9999: no calendar holds it
            return _error(400, f"the cosignature time of {name} is out of range")
    stored = []
    for name, _, line in result.valid:
        Cosignature.objects.get_or_create(
            checkpoint=checkpoint,
            witness=name,
            defaults={"line": line, "signed_at": times[name]},
        )
        stored.append(name)
    if result.invalid:
        return _error(400, f"cosignatures that do not verify: {', '.join(result.invalid)}")
    if not stored:
        return _error(400, "no cosignature of a known witness in the note")
    return JsonResponse({"size": checkpoint.size, "cosigned_by": stored})
