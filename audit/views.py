"""The auditors' pages: read-only, login required, auditor group only."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit import signing
from audit.chain import recompute_hash
from audit.evidence import NothingToExport, evidence_export
from audit.models import ArchiveSegment, AuditCheckpoint, AuditEntry, LaneHead, VerificationRun
from audit.services import verification_start
from payflow import context

AUDITOR_GROUP = "auditor"


def auditor_required(view):
    """Login required; then only members of the auditor group (403 for anyone else)."""

    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.groups.filter(name=AUDITOR_GROUP).exists():
            raise PermissionDenied("auditors only")
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    return wrapper


@require_GET
@auditor_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "audit/dashboard.html",
        {
            "lanes": LaneHead.objects.order_by("lane"),
            "entries": AuditEntry.objects.count(),
            "last_run": VerificationRun.objects.order_by("-id").first(),
            "last_checkpoint": AuditCheckpoint.objects.order_by("-number").first(),
            "segments": ArchiveSegment.objects.order_by("lane", "first_seq")[:200],
        },
    )


@require_POST
@auditor_required
def verification_new(request: HttpRequest) -> HttpResponse:
    with context.bind(reason="verification started by an auditor"):
        run = verification_start(started_by=request.user.get_username())
    return redirect("audit:verification", run_id=run.id)


@require_GET
@auditor_required
def verification(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(VerificationRun, pk=run_id)
    return render(request, "audit/verification.html", {"run": run})


@require_GET
@auditor_required
def record(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    rows = list(
        AuditEntry.objects.filter(object_type=object_type, object_id=object_id).order_by("seq")
    )
    for row in rows:
        row.hash_ok = recompute_hash(row) == row.hash
        row.link_ok = _links_to_previous(row)
    return render(
        request,
        "audit/record.html",
        {"rows": rows, "object_type": object_type, "object_id": object_id},
    )


def _links_to_previous(row: AuditEntry) -> bool | None:
    """Does prev_hash name the previous row of the lane? None if that row is archived."""
    if row.seq == 1:
        return row.prev_hash == "0" * 64
    previous = AuditEntry.objects.filter(lane=row.lane, seq=row.seq - 1).first()
    return None if previous is None else previous.hash == row.prev_hash


@require_GET
@auditor_required
def checkpoints(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "audit/checkpoints.html",
        {"checkpoints": AuditCheckpoint.objects.order_by("-number")[:500]},
    )


@require_GET
@auditor_required
def checkpoint_download(request: HttpRequest, number: int) -> HttpResponse:
    checkpoint = get_object_or_404(AuditCheckpoint, pk=number)
    response = JsonResponse(checkpoint.signed, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="checkpoint-{number}.json"'
    return response


@require_GET
@auditor_required
def public_key(request: HttpRequest) -> HttpResponse:
    pem = signing.public_key_pem(signing.public_key_from_seed(settings.AUDIT_SIGNING_KEY))
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="audit-public-key.pem"'
    return response


@require_GET
@auditor_required
def export(request: HttpRequest) -> HttpResponse:
    try:
        lane = int(request.GET["lane"])
        first, last = int(request.GET.get("first_seq", 1)), int(request.GET["last_seq"])
    except (KeyError, ValueError):
        return render(request, "audit/export.html", {"lanes": range(settings.AUDIT_LANES)})
    try:
        bundle = evidence_export(lane=lane, first_seq=first, last_seq=last)
    except NothingToExport as exc:
        return render(
            request,
            "audit/export.html",
            {"lanes": range(settings.AUDIT_LANES), "error": str(exc)},
            status=409,
        )
    response = HttpResponse(json.dumps(bundle, indent=1), content_type="application/json")
    response["Content-Disposition"] = (
        f'attachment; filename="evidence-lane{lane}-{first}-{last}.json"'
    )
    return response
