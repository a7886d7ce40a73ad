"""The auditors' pages: read-only, login required, auditor group only."""

from __future__ import annotations

import json
from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from audit import signing
from audit.archive import segment_check
from audit.chain import lane_for, recompute_hash
from audit.evidence import NothingToExport, evidence_export
from audit.models import (
    ArchiveSegment,
    AuditCheckpoint,
    AuditEntry,
    LaneHead,
    LegalHold,
    RetentionPurge,
    VerificationRun,
)
from audit.runs import verification_start
from audit.segments import SegmentProblem, previous_segment_hash, read_segment, readable_segments
from audit.tasks import verification_run
from payflow.platform import context

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
            "segments": ArchiveSegment.objects.order_by("lane", "first_seq")[:500],
            "segment_count": ArchiveSegment.objects.count(),
            "purges": RetentionPurge.objects.order_by("-id")[:20],
            "holds": LegalHold.objects.filter(released_at__isnull=True).order_by("id"),
            "archive_after": settings.AUDIT_ARCHIVE_AFTER.days,
            "retention": settings.AUDIT_RETENTION.days,
        },
    )


@require_POST
@auditor_required
def segment_check_view(request: HttpRequest, segment_id: int) -> HttpResponse:
    """Check one segment file now (digest, every row hash and link); the result is shown on
    the dashboard next to the segment."""
    get_object_or_404(ArchiveSegment, pk=segment_id)
    segment = segment_check(segment_id)
    outcome = {True: "checks", False: "DOES NOT CHECK", None: "was not checked"}[segment.check_ok]
    messages.info(request, f"Segment {segment} {outcome}: {segment.check_detail}")
    return redirect(f"{reverse('audit:dashboard')}#segment-{segment.id}")


@require_GET
@auditor_required
def retention_record(request: HttpRequest, purge_id: int) -> HttpResponse:
    purge = get_object_or_404(RetentionPurge, pk=purge_id)
    return _signed_download(purge.signed, f"retention-{purge.id}.json")


def _signed_download(signed: dict, filename: str) -> HttpResponse:
    """A signed statement (checkpoint, retention record) as a JSON file to download."""
    response = JsonResponse(signed, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@auditor_required
def verification_new(request: HttpRequest) -> HttpResponse:
    with context.bind(reason="verification started by an auditor"):
        run = verification_start(
            started_by=request.user.get_username(), queue=verification_run.delay
        )
    return redirect("audit:verification", run_id=run.id)


@require_GET
@auditor_required
def verification(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(VerificationRun, pk=run_id)
    return render(request, "audit/verification.html", {"run": run})


@require_GET
@auditor_required
def record(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    """Every audit row of one object with its hash links checked; ``?archived=1`` also reads
    the lane's archive segment files for the object's archived rows."""
    rows = list(
        AuditEntry.objects.filter(object_type=object_type, object_id=object_id).order_by("seq")
    )
    for row in rows:
        row.hash_ok = recompute_hash(row) == row.hash
        row.link_ok = _links_to_previous(row)
    lane = lane_for(object_type, object_id)
    segments = readable_segments(lane)
    archived, archive_error = [], ""
    if request.GET.get("archived") == "1":
        try:
            archived = _archived_rows(segments, object_type, object_id)
        except SegmentProblem as problem:
            archive_error = f"{problem.kind}: {problem}"
    return render(
        request,
        "audit/record.html",
        {
            "rows": archived + rows,
            "object_type": object_type,
            "object_id": object_id,
            "lane": lane,
            "segments": len(segments),
            "archive_error": archive_error,
            "showing_archived": request.GET.get("archived") == "1",
        },
    )


def _archived_rows(segments, object_type: str, object_id: str) -> list[SimpleNamespace]:
    found = []
    for segment in segments:
        previous = previous_segment_hash(segment)
        for row in read_segment(segment):
            fields = json.loads(row.canonical)
            if (fields["object_type"], fields["object_id"]) == (object_type, object_id):
                fields.update(
                    lane=row.lane,
                    seq=row.seq,
                    prev_hash=row.prev_hash,
                    hash=row.hash,
                    created_at=parse_datetime(fields["created_at"]),
                    hash_ok=row.hash_ok(),
                    link_ok=row.prev_hash == previous,
                    archived=True,
                )
                found.append(SimpleNamespace(**fields))
            previous = row.hash
    return found


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
    return _signed_download(checkpoint.signed, f"checkpoint-{number}.json")


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
