import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from ledger.models import Merchant
from ledger.services.api_keys import api_key_authenticate, api_key_create
from ledger.services.merchants import merchant_create
from payflow.platform import context, db

DEMO_USERS = [
    # username, group, is_staff, is_superuser
    ("admin", None, True, True),
    ("operator", "operator", True, False),
    ("auditor", "auditor", True, False),
]
DEMO_MERCHANT = "Demo Shop"


class Command(BaseCommand):
    help = (
        "Create the demo data for `make run` once: a merchant with a test API key, and logins "
        "for an admin, an operator and an auditor; print the demo credentials. Safe to run "
        "again: nothing is duplicated. Development only (the file keeps the secrets)."
    )

    def handle(self, *args, **options):
        # Every change is audited with its actor: this command acts as itself.
        with context.replaced(context.AuditContext(**context.system_actor("command:seed_demo"))):
            self._seed()

    def _seed(self):
        path = settings.VAR_DIR / "demo-credentials.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        credentials = {
            "logins": db.run_atomic(self._ensure_users, stored.get("logins", {})),
            "api_key": self._ensure_api_key(stored.get("api_key")),
        }
        if credentials != stored:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(credentials, indent=2))
            path.chmod(0o600)
        self.stdout.write(f"Demo credentials (development only; kept in {path}):")
        self.stdout.write(f"  merchant API key  {credentials['api_key']}")
        for name, password in credentials["logins"].items():
            self.stdout.write(f"  {name:<9} login   {password}")

    @staticmethod
    def _ensure_api_key(stored_secret):
        if stored_secret and api_key_authenticate(stored_secret) is not None:
            return stored_secret
        merchant = Merchant.objects.filter(name=DEMO_MERCHANT).first()
        if merchant is None:
            merchant = merchant_create(name=DEMO_MERCHANT, default_currency="EUR")
        # No usable stored secret (first run, or the file was removed): issue a key. Only
        # its hash is kept in the database, so a lost secret cannot be shown again.
        return api_key_create(merchant=merchant, name="demo").secret

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
