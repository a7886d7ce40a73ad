"""Admin of the audit trail: read-only for everyone, superusers included."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Replace
from django.http import HttpRequest

from audit.models import (
    ArchiveSegment,
    AuditEntry,
    Checkpoint,
    Cosignature,
    LegalHold,
    RetentionPurge,
    VerificationRun,
)
from audit.objects import FIXED_KINDS, target_type
from ledger import ids
from ledger.models import Transaction
from payflow.admin.base import ReadOnlyAdmin
from payflow.admin.display import looks_like_public_id, uuid_of_public_id


def _field_names(model: Any) -> tuple[str, ...]:
    # Read when the page is built, so fields other apps add later show without a change here.
    return tuple(field.name for field in model._meta.concrete_fields)


class GenericReadOnlyAdmin(ReadOnlyAdmin):
    """Every concrete field, listed and shown, none editable."""

    def get_list_display(self, request: HttpRequest) -> tuple[str, ...]:
        return _field_names(self.model)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _field_names(self.model)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return _field_names(self.model)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Audit rows can be read, never added, changed or deleted here: ``has_*_permission``
    answers False whoever asks (Django's superuser shortcut only applies to permissions
    checked through ``user.has_perm``, which these methods do not consult)."""

    list_display = (
        "id",
        "created_at",
        "object_type",
        "object",
        "event_type",
        "actor_type",
        "actor_id",
    )
    list_filter = ("actor_type", "action", "object_type")
    search_fields = ("=object_id", "=request_id", "=actor_id")
    search_help_text = (
        "An object's id (pay_…, acct_…, tok_… or its UUID), a request id or an actor id."
    )
    show_full_result_count = False
    actions = None

    def get_queryset(self, request):
        # a transaction's type, for its public id, in the list's own query
        kind = Transaction.objects.filter(
            pk=Replace(OuterRef("object_id"), Value("-"), Value(""))
        ).values("type")[:1]
        return super().get_queryset(request).annotate(transaction_type=Subquery(kind))

    @admin.display(description="object", ordering="object_id")
    def object(self, obj: AuditEntry) -> str:
        """The object by the id people know (``pay_…``, ``acct_…``, ``tok_…``), else its id."""
        kind = FIXED_KINDS.get(target_type(obj.object_type)) or getattr(
            obj, "transaction_type", None
        )
        return ids.encode_if_public(kind or "", obj.object_id)

    def get_search_results(self, request, queryset, search_term):
        value = uuid_of_public_id(search_term)
        if value is not None:  # entries name objects by their UUID
            return queryset.filter(object_id=str(value)), False
        if looks_like_public_id(search_term):
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)

    def get_fields(self, request, obj=None):
        return _field_names(AuditEntry)

    def get_readonly_fields(self, request, obj=None):
        return _field_names(AuditEntry)


@admin.register(Checkpoint)
class CheckpointAdmin(GenericReadOnlyAdmin):
    """Signed checkpoints: the auditors' material (operators hold no permission here)."""

    actions = None


@admin.register(Cosignature)
class CosignatureAdmin(GenericReadOnlyAdmin):
    actions = None


@admin.register(ArchiveSegment)
class ArchiveSegmentAdmin(GenericReadOnlyAdmin):
    actions = None


@admin.register(VerificationRun)
class VerificationRunAdmin(GenericReadOnlyAdmin):
    actions = None


@admin.register(RetentionPurge)
class RetentionPurgeAdmin(GenericReadOnlyAdmin):
    """Records of what the retention purge removed (each also an entry of the log)."""

    actions = None


@admin.register(LegalHold)
class LegalHoldAdmin(GenericReadOnlyAdmin):
    """Holds are placed and released with ``manage.py audit_legal_hold`` (audited), or for a
    merchant with its ``legal_hold`` flag."""

    actions = None
