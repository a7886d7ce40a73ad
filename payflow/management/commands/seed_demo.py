import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from payflow import db

DEMO_USERS = [
    # username, group, is_staff, is_superuser
    ("admin", None, True, True),
    ("operator", "operator", True, False),
    ("auditor", "auditor", True, False),
]


class Command(BaseCommand):
    help = (
        "Create the demo data for `make run` (logins for an admin, an operator and an auditor) "
        "once, and print the demo credentials. Safe to run again: nothing is duplicated."
    )

    def handle(self, *args, **options):
        path = settings.VAR_DIR / "demo-credentials.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        credentials = db.run_atomic(self._ensure_users, stored)
        if credentials != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(credentials, indent=2))
            path.chmod(0o600)
        self.stdout.write(f"Demo logins (development only; kept in {path}):")
        for name, password in credentials.items():
            self.stdout.write(f"  {name:<9} {password}")

    def _ensure_users(self, stored):
        return {
            name: self._ensure_user(name, group, staff, superuser, stored)
            for name, group, staff, superuser in DEMO_USERS
        }

    @staticmethod
    def _ensure_user(name, group_name, staff, superuser, stored):
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            username=name, defaults={"is_staff": staff, "is_superuser": superuser}
        )
        password = stored.get(name)
        # The password is known only if this command made it; otherwise set a new one.
        if created or not password or not user.check_password(password):
            password = secrets.token_urlsafe(12)
            user.set_password(password)
            user.save(update_fields=["password"])
        if group_name:
            group, _ = Group.objects.get_or_create(name=group_name)
            user.groups.add(group)
        return password
