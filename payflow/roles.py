"""The admin's roles: which Django permissions the ``operator`` and ``auditor`` groups hold.

Applied by the data migration ``payflow.0003_roles`` (and again by any later migration
that changes these lists, e.g. ``0004_job_pause``). A user needs ``is_staff`` and one group
to use the admin; superusers hold every permission, but the admin still refuses them any
change to audit rows (``AuditEntryAdmin``). Merchants have no users: they authenticate
with API keys, which the admin does not accept.

The ``change`` permission of a ledger or outbox model is what allows an operator's
*actions* on it (capture, refund, suspend, revoke, requeue…): the admin never edits a
field of those rows directly; every change goes through a service.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions

OPERATOR = "operator"
AUDITOR = "auditor"

_READABLE = {
    "ledger": ["merchant", "apikey", "transaction", "cardtoken", "journalentry", "journalline",
               "account"],
    "outbox": ["outboxevent"],
    "payflow": ["jobrun", "webhookendpoint", "webhookdelivery"],
}  # fmt: skip

#: app label → model → actions (Django's codenames are ``<action>_<model>``).
ROLE_PERMISSIONS: dict[str, dict[str, dict[str, list[str]]]] = {
    OPERATOR: {
        "ledger": {
            **{model: ["view"] for model in _READABLE["ledger"]},
            "merchant": ["view", "add", "change"],
            "apikey": ["view", "add", "change"],
            "transaction": ["view", "change"],
            "cardtoken": ["view", "change"],  # change: erase a cardholder
        },
        "outbox": {"outboxevent": ["view", "change"]},
        "payflow": {
            "jobrun": ["view", "change"],  # change: pause and resume jobs
            "webhookendpoint": ["view", "change"],  # change: enable a disabled endpoint
            "webhookdelivery": ["view", "change"],  # change: resend an event
        },
        # Audit rows for the objects' history; not checkpoints (their signed bodies are
        # the auditors' material) nor verification runs.
        "audit": {"auditentry": ["view"], "archivesegment": ["view"]},
    },
    AUDITOR: {
        **{app: {model: ["view"] for model in models} for app, models in _READABLE.items()},
        "audit": {
            model: ["view"]
            for model in (
                "auditentry",
                "checkpoint",
                "cosignature",
                "archivesegment",
                "verificationrun",
            )
        },
    },
}


def codenames(role: str) -> list[tuple[str, str]]:
    """(app label, codename) of every permission ``role`` holds."""
    return [
        (app, f"{action}_{model}")
        for app, models in ROLE_PERMISSIONS[role].items()
        for model, actions in models.items()
        for action in actions
    ]


def roles_apply(apps) -> None:
    """Create both groups (if missing) and set their permissions to exactly the lists above.

    ``apps``: the migration's historical registry, or ``django.apps.apps``. Permissions are
    normally created after all migrations (post_migrate), so they are created here first.
    A model the registry does not have yet (an earlier migration calling this) is left out;
    the migration that adds it calls this again.
    """
    for app_config in apps.get_app_configs():
        module = getattr(app_config, "models_module", None)
        app_config.models_module = module or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = module
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role in ROLE_PERMISSIONS:
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(
            [
                permission_model.objects.get(content_type__app_label=app, codename=codename)
                for app, codename in codenames(role)
                if _has_model(apps, app, codename.split("_", 1)[1])
            ]
        )


def _has_model(apps, app: str, model: str) -> bool:
    try:
        apps.get_model(app, model)
    except LookupError:
        return False
    return True


def has_role(user, role: str) -> bool:
    """Whether ``user`` (logged in) belongs to the group of ``role``."""
    return bool(getattr(user, "is_authenticated", False) and user.groups.filter(name=role).exists())
