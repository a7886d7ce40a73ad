"""The auditors' pages: read-only, login required, auditor group only."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from audit import timeline
from audit.archive import segment_check
from audit.evidence import (
    NothingToExport,
    UnreadableExport,
    evidence_prepare,
    trusted_checkpoint,
)
from audit.forks import check_checkpoints
from audit.logviews import note_with_cosignatures
from audit.models import (
    ArchiveSegment,
    AuditEntry,
    Checkpoint,
    LegalHold,
    LogLeaf,
    RetentionPurge,
    VerificationRun,
)
from audit.objects import from_public_id, history_types, row_exists
from audit.objects import public_id as public_id_of
from audit.runs import verification_start
from audit.search import search
from audit.segments import SegmentProblem, read_segment
from audit.sequencer import log_size
from audit.tasks import verification_run
from ledger.models import Merchant
from payflow.platform import context, personal, trail

AUDITOR_GROUP = "auditor"  # payflow.roles.AUDITOR (that layer is above this one)


def auditor_required(view):
    """Login required; then only members of the auditor group (anyone else gets an HTML
    403 page saying why)."""

    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.groups.filter(name=AUDITOR_GROUP).exists():
            return render(request, "audit/forbidden.html", status=403)
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
            "log_size": log_size(),
            "entries": AuditEntry.objects.count(),
            "last_run": VerificationRun.objects.order_by("-id").first(),
            "last_checkpoint": Checkpoint.objects.order_by("-size").first(),
            "segments": ArchiveSegment.objects.order_by("first_index")[:500],
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
    """A retention purge's record (the removed index range and segments); the purge itself
    is an entry of the log, sealed by its checkpoints."""
    purge = get_object_or_404(RetentionPurge, pk=purge_id)
    response = JsonResponse(
        {
            "id": purge.id,
            "created_at": purge.created_at.isoformat(),
            "first_index": purge.first_index,
            "last_index": purge.last_index,
            "segments": purge.detail,
            "rows": purge.row_count,
        },
        json_dumps_params={"indent": 2},
    )
    response["Content-Disposition"] = f'attachment; filename="retention-{purge.id}.json"'
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
    """A run's progress, then its result: every break by kind, object (with a link to the
    entry in its history) and log index, and the last signed checkpoint before the first
    broken entry (what was proved up to it still holds)."""
    run = get_object_or_404(VerificationRun, pk=run_id)
    indexes = [b["index"] for b in run.breaks if b.get("index") is not None]
    first_bad = min(indexes) if indexes else None
    last_good = (
        Checkpoint.objects.filter(size__lte=first_bad).order_by("-size").first()
        if first_bad is not None
        else None
    )
    return render(
        request,
        "audit/verification.html",
        {"run": run, "first_bad": first_bad, "last_good": last_good},
    )


@require_GET
@auditor_required
def search_view(request: HttpRequest) -> HttpResponse:
    """The search box: one public id goes straight to its history; anything else lists
    the objects it names and their entries, filtered (``audit.search``)."""
    asked = {
        key: request.GET.get(key, "").strip()[:200]
        for key in ("q", "event_type", "actor", "since", "until", "before")
    }
    if asked["q"] and not any(asked[key] for key in ("event_type", "actor", "since", "until")):
        found = from_public_id(asked["q"])
        if found is not None:
            return redirect("audit:record_by_public_id", public_id=asked["q"])
    problem = ""
    try:
        since = _moment(asked["since"], "since")
        until = _moment(asked["until"], "until")
    except NothingToExport as exc:
        problem, since, until = str(exc), None, None
    before = int(asked["before"]) if _whole_number(asked["before"]) else None
    result = None
    if not problem and any(asked[key] for key in ("q", "event_type", "actor", "since", "until")):
        result = search(
            text=asked["q"],
            event_type=asked["event_type"],
            actor=asked["actor"],
            since=since,
            until=until,
            before=before,
        )
    # Only what matched something (or is a time) is written back into the page: anything
    # else could be a card number typed in the wrong box.
    matched = result is not None and bool(result.entries)
    shown = {
        "q": asked["q"] if result is not None and result.objects else "",
        "event_type": asked["event_type"] if matched else "",
        "actor": asked["actor"] if matched else "",
        "since": asked["since"] if since else "",
        "until": asked["until"] if until else "",
    }
    return render(
        request,
        "audit/search.html",
        {
            "asked": shown,
            "searched": result is not None,
            "result": result,
            "problem": problem,
            "more": _more_url(request, result),
        },
        status=400 if problem else 200,
    )


def _whole_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 19


def _more_url(request: HttpRequest, result) -> str:
    if result is None or result.before is None:
        return ""
    query = request.GET.copy()
    query["before"] = str(result.before)
    return f"{reverse('audit:search')}?{query.urlencode()}"


@require_GET
@auditor_required
def record_by_public_id(request: HttpRequest, public_id: str) -> HttpResponse:
    """An object's history by the id people know (``pay_…``, ``re_…``, ``acct_…``,
    ``tok_…``). An id that names nothing is not echoed (it could be a card number)."""
    found = from_public_id(public_id)
    if found is None:
        return render(request, "audit/record.html", {"unknown": True, "rows": []}, status=404)
    return _record(request, *found)


@require_GET
@auditor_required
def record(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    """Every entry of one object, oldest first, each checked: its bytes hash to its hash,
    it links to the previous entry, and its leaf is proven in the latest signed checkpoint;
    ``?archived=1`` also reads the archive segment files for the object's archived
    entries. Each entry shows what it changed, field by field (``audit.timeline``)."""
    return _record(request, object_type, object_id)


def _record(request: HttpRequest, object_type: str, object_id: str) -> HttpResponse:
    rows = list(
        AuditEntry.objects.filter(
            object_type__in=history_types(object_type), object_id=object_id
        ).order_by("id")
    )
    if not rows and not row_exists(object_type, object_id):
        # nothing recorded of it, and no such row: not echoed (it could be a card number)
        return render(request, "audit/record.html", {"unknown": True, "rows": []}, status=404)
    leaves = dict(
        LogLeaf.objects.filter(entry_id__in=[row.id for row in rows]).values_list(
            "entry_id", "index"
        )
    )
    shown = [_shown(row.body, row.prev_hash, row.hash, leaves.get(row.id)) for row in rows]
    archived, archive_error = [], ""
    if request.GET.get("archived") == "1":
        try:
            archived = _archived_rows(object_type, object_id)
        except SegmentProblem as problem:
            archive_error = f"{problem.kind}: {problem}"
    ordered = sorted(archived + shown, key=lambda row: (row.index is None, row.index or 0))
    previous: dict[str, str] = {}  # each chain (the object's, the operators') on its own
    for row in ordered:
        before = previous.get(row.object_type)
        if before is None and row.prev_hash != trail.GENESIS_HASH:
            # The first entry shown of its chain follows one that is not shown: archived
            # (not read: no ?archived=1) or purged, or else the link is broken.
            row.archived_before = _follows_an_archived_entry(row)
        row.link_ok = (
            row.prev_hash == (before or trail.GENESIS_HASH) if not row.archived_before else None
        )
        previous[row.object_type] = row.hash
    checkpoint = Checkpoint.objects.order_by("-size").first()
    proofs = (
        timeline.proven(
            [(row.index, row.hash) for row in ordered if row.index is not None],
            checkpoint.size,
            checkpoint.root,
        )
        if checkpoint
        else {}
    )
    for row in ordered:
        row.proof_ok = proofs.get(row.index)
    return render(
        request,
        "audit/record.html",
        {
            "rows": ordered,
            "object_type": object_type,
            "object_id": object_id,
            "public_id": public_id_of(object_type, object_id),
            "checkpoint": checkpoint,
            "segments": ArchiveSegment.objects.filter(rows_deleted_at__isnull=False).count(),
            "archive_error": archive_error,
            "showing_archived": request.GET.get("archived") == "1",
        },
    )


def _shown(body: bytes, prev_hash: str, digest: str, index: int | None, archived=False):
    body = bytes(body)
    fields = personal.reveal_entry(json.loads(body))
    return SimpleNamespace(
        **fields,
        created=parse_datetime(fields["created_at"]),
        prev_hash=prev_hash,
        hash=digest,
        index=index,
        hash_ok=trail.entry_hash(prev_hash, body) == digest,
        changes=timeline.changes(fields["old"], fields["new"]),
        archived=archived,
        archived_before=False,
    )


def _follows_an_archived_entry(row: SimpleNamespace) -> bool:
    """Whether the entry ``row`` links to left the live table for the archive: no live
    entry has its hash, and the live entries of a segment before ``row`` were deleted
    (as verification accepts such a link: ``audit.verify._resolve_links``)."""
    if AuditEntry.objects.filter(hash=row.prev_hash).exists():
        return False  # live, of another object (it would be shown otherwise): broken
    segments = ArchiveSegment.objects.filter(rows_deleted_at__isnull=False)
    if row.index is not None:
        segments = segments.filter(first_index__lt=row.index)
    return segments.exists()


def _archived_rows(object_type: str, object_id: str) -> list[SimpleNamespace]:
    found = []
    types = history_types(object_type)
    for segment in ArchiveSegment.objects.filter(
        rows_deleted_at__isnull=False, purged_at__isnull=True
    ).order_by("first_index"):
        for entry in read_segment(segment):
            fields = json.loads(entry.body)
            if fields["object_id"] == object_id and fields["object_type"] in types:
                found.append(
                    _shown(entry.body, entry.prev_hash, entry.hash, entry.index, archived=True)
                )
    return found


@require_GET
@auditor_required
def checkpoints(request: HttpRequest) -> HttpResponse:
    """The signed checkpoints, newest first, a page at a time (``before``: a size), each
    with its witnesses' cosignatures; a chart of the log's size over time; and a fork
    alarm when the shown checkpoints and the stored tree disagree (``audit.forks``)."""
    before = request.GET.get("before", "")
    shown = Checkpoint.objects.order_by("-size").prefetch_related("cosignatures")
    if _whole_number(before):
        shown = shown.filter(size__lt=int(before))
    page = list(shown[: CHECKPOINT_PAGE + 1])
    # the next larger checkpoint too, so the page's newest is checked against it
    newer = (
        Checkpoint.objects.filter(size__gt=page[0].size).order_by("size").first() if page else None
    )
    alarms = check_checkpoints(page + ([newer] if newer else []))
    more = page[CHECKPOINT_PAGE - 1].size if len(page) > CHECKPOINT_PAGE else None
    return render(
        request,
        "audit/checkpoints.html",
        {
            "checkpoints": page[:CHECKPOINT_PAGE],
            "alarms": alarms,
            "alarmed": {alarm.size for alarm in alarms},
            "more": more,
            "chart": _cached_size_chart(),
            "public_key": settings.AUDIT_PUBLIC_KEY,
        },
    )


CHECKPOINT_PAGE = 100
CHART_SECONDS = 60  # the chart's ~60 primary-key lookups, once a minute at most
_CHART_POINTS = 60
_CHART_WIDTH, _CHART_HEIGHT = 600, 140


def _cached_size_chart() -> dict | None:
    """``_size_chart``, kept a minute for one latest checkpoint (its size and time)."""
    latest = Checkpoint.objects.order_by("-size").values_list("size", "created_at").first()
    if latest is None:
        return None
    key = f"audit:size-chart:{latest[0]}:{latest[1].timestamp()}"
    return cache.get_or_set(key, _size_chart, CHART_SECONDS)


def _size_chart() -> dict | None:
    """The log's size over its life, from up to ``_CHART_POINTS`` checkpoints evenly spread
    by size (one primary-key lookup each), as SVG polyline points."""
    latest = Checkpoint.objects.order_by("-size").values_list("size", "created_at").first()
    first = Checkpoint.objects.order_by("size").values_list("size", "created_at").first()
    if latest is None or first is None or latest[0] == first[0]:
        return None
    samples = {first, latest}
    for step in range(1, _CHART_POINTS - 1):
        target = first[0] + (latest[0] - first[0]) * step // (_CHART_POINTS - 1)
        found = (
            Checkpoint.objects.filter(size__lte=target)
            .order_by("-size")
            .values_list("size", "created_at")
            .first()
        )
        if found:
            samples.add(found)
    ordered = sorted(samples)
    start, end = first[1].timestamp(), max(latest[1].timestamp(), first[1].timestamp() + 1)
    points = " ".join(
        f"{(moment.timestamp() - start) / (end - start) * _CHART_WIDTH:.1f},"
        f"{_CHART_HEIGHT - size / latest[0] * _CHART_HEIGHT:.1f}"
        for size, moment in ordered
    )
    return {
        "points": points,
        "width": _CHART_WIDTH,
        "height": _CHART_HEIGHT,
        "first": first,
        "latest": latest,
        "samples": len(ordered),
    }


@require_GET
@auditor_required
def checkpoint_download(request: HttpRequest, size: int) -> HttpResponse:
    checkpoint = get_object_or_404(Checkpoint, pk=size)
    response = HttpResponse(note_with_cosignatures(checkpoint), content_type="text/plain")
    response["Content-Disposition"] = f'attachment; filename="checkpoint-{size}.txt"'
    return response


@require_GET
@auditor_required
def public_key(request: HttpRequest) -> HttpResponse:
    """The log's verifier key (signed-note format), for the offline verifier and witnesses."""
    response = HttpResponse(settings.AUDIT_PUBLIC_KEY + "\n", content_type="text/plain")
    response["Content-Disposition"] = 'attachment; filename="audit-log.vkey"'
    return response


@require_GET
@auditor_required
def export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Evidence for one object (``object``: its public id, or ``object_type`` and
    ``object_id``), a merchant (``merchant``: ``acct_…`` or its id) or a time range
    (``since``/``until``, ISO 8601), optionally with a consistency proof from a checkpoint
    the auditor trusts (``trusted``: its note). ``format=json`` streams the bundle
    (``docs/audit-formats.md`` §5), ``format=csv`` the same entries as CSV; the
    ``X-Payflow-Entries`` header says how many entries follow (the page's progress bar).
    ``show=form`` shows the form filled in with the query instead (a history's link)."""
    wanted = {
        key: request.GET.get(key, "").strip()
        for key in ("object", "object_type", "object_id", "merchant", "since", "until", "trusted")
    }
    wanted["format"] = request.GET.get("format", "json")
    # A note ends with its newline (which strip() removed); a browser sends a textarea's
    # line breaks as CRLF.
    if wanted["trusted"]:
        wanted["trusted"] = wanted["trusted"].replace("\r\n", "\n") + "\n"
    asked = any(wanted[key] for key in ("object", "object_id", "merchant", "since", "until"))
    if not asked or request.GET.get("show") == "form":  # the form, filled in from a link
        return render(
            request,
            "audit/export.html",
            {"wanted": _echoable(wanted), "large_export": LARGE_EXPORT},
        )
    try:
        if wanted["format"] not in ("json", "csv"):
            raise UnreadableExport("format must be json or csv")
        object_type, object_id = _exported_object(wanted)
        since = _moment(wanted["since"], "since")
        until = _moment(wanted["until"], "until")
        trusted = trusted_checkpoint(wanted["trusted"]) if wanted["trusted"] else (None, None)
        prepared = evidence_prepare(
            object_type=object_type,
            object_id=object_id,
            merchant_id=_exported_merchant(wanted["merchant"]),
            since=since,
            until=until,
            trusted_size=trusted[0],
            trusted_root=trusted[1],
        )
    except NothingToExport as exc:
        return render(
            request,
            "audit/export.html",
            {"wanted": _echoable(wanted), "error": str(exc), "large_export": LARGE_EXPORT},
            status=400 if isinstance(exc, UnreadableExport) else 409,
        )
    name = f"evidence-{prepared.size}-{prepared.count}"
    if wanted["format"] == "csv":
        response = StreamingHttpResponse(
            prepared.csv_chunks(), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    else:
        response = StreamingHttpResponse(prepared.bundle_chunks(), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
    response["X-Payflow-Entries"] = str(prepared.count)
    return response


#: Above this many entries the export page lets the browser save the download itself (to
#: disk, with the browser's own progress) instead of holding it in the page for its bar.
LARGE_EXPORT = 100_000


def _echoable(wanted: dict[str, str]) -> dict[str, str]:
    """The form's values that may be written back into the page: those that name something
    recorded, parse as a time, or verify as a checkpoint. Anything else could be a card
    number typed into the wrong box, and is left out."""
    shown = dict.fromkeys(wanted, "")
    shown["format"] = "csv" if wanted.get("format") == "csv" else "json"
    if wanted["object"] and from_public_id(wanted["object"]) is not None:
        shown["object"] = wanted["object"]
    if (
        wanted["object_type"]
        and wanted["object_id"]
        and AuditEntry.objects.filter(
            object_type=wanted["object_type"], object_id=wanted["object_id"]
        ).exists()
    ):
        shown["object_type"], shown["object_id"] = wanted["object_type"], wanted["object_id"]
    try:
        if wanted["merchant"] and _exported_merchant(wanted["merchant"]):
            shown["merchant"] = wanted["merchant"]
    except NothingToExport:
        pass
    for key in ("since", "until", "trusted"):
        try:
            if wanted[key] and (
                trusted_checkpoint(wanted[key]) if key == "trusted" else _moment(wanted[key], key)
            ):
                shown[key] = wanted[key]
        except NothingToExport:
            pass
    return shown


def _exported_object(wanted: dict[str, str]) -> tuple[str | None, str | None]:
    if wanted["object"]:
        found = from_public_id(wanted["object"])
        if found is None:
            raise UnreadableExport(
                "no payment, refund, chargeback, payout, merchant or card token has that id"
            )
        return found
    if bool(wanted["object_type"]) != bool(wanted["object_id"]):
        raise UnreadableExport("give both the object's type and its id")
    return wanted["object_type"] or None, wanted["object_id"] or None


def _exported_merchant(text: str) -> str | None:
    """The merchant's id as entries name it, from ``acct_…`` or its UUID; the merchant
    must exist."""
    if not text:
        return None
    found = from_public_id(text) if "_" in text else ("ledger.merchant", text)
    try:
        exists = found is not None and Merchant.objects.filter(pk=found[1]).exists()
    except (ValueError, ValidationError):
        exists = False
    if found is None or found[0] != "ledger.merchant" or not exists:
        raise UnreadableExport("no merchant has that id: give its acct_… id")
    return found[1]


def _moment(text: str, name: str):
    """The time ``text`` says (ISO 8601 with its UTC offset), in UTC; ``UnreadableExport``
    for anything else, a time outside years 1..9999 in UTC included."""
    if not text:
        return None
    try:
        moment = parse_datetime(text)
        if moment is not None and moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # not a time (month 13), or out of range in UTC
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UnreadableExport(f"{name} must be an ISO 8601 time with its UTC offset")
    return moment
