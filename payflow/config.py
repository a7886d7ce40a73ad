"""Secrets and database settings read from the environment, checked before Django starts.

Every secret PayFlow needs comes from the environment (or from a `.env` file in
development). With ``DEBUG=False`` a missing or weak secret stops start-up with
``ImproperlyConfigured`` naming the variable; nothing falls back to a built-in default.

Run ``python -m payflow.config`` to write a development ``.env`` with freshly generated
secrets (``make run`` does it on first run; an existing file is never overwritten).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import math
import os
import secrets
import sys
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from audit import tlog

SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARS = 10
KEY_BYTES = 32
_WEAK_MARKERS = ("django-insecure", "change-me", "changeme", "secret", "example", "dummy")


@dataclass(frozen=True)
class Secrets:
    """The application's secrets, validated."""

    secret_key: str
    vault_keys: dict[int, bytes]
    card_fingerprint_key: bytes
    # The log's verifier key (public): the signer key is the sequencer's alone and is not
    # in settings (``audit.sequencer.signing_key_from_environment``).
    audit_public_key: str


class SecretFileEnviron(MutableMapping[str, str]):
    """The process environment, where ``NAME_FILE`` (a path) supplies ``NAME``: Docker and
    Kubernetes secrets are files (``/run/secrets/…``), and a secret in a file is in no
    process listing, no ``docker inspect`` and no crash dump of the environment.

    The file's text is the value, without its final line breaks (LF or CRLF; bash's
    ``$(<file)`` in the image's entrypoint strips them the same way). Setting both ``NAME`` and
    ``NAME_FILE``, or naming a file that cannot be read, is refused with a sentence."""

    def __init__(self, environ_: MutableMapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ_ is None else environ_

    def __getitem__(self, name: str) -> str:
        path = self.environ.get(f"{name}_FILE", "")
        if not path:
            return self.environ[name]
        if name in self.environ:
            raise ImproperlyConfigured(
                f"both {name} and {name}_FILE are set: set only one (the file is for secrets)"
            )
        try:
            with open(path, encoding="utf-8") as secret_file:
                text = secret_file.read()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise ImproperlyConfigured(f"{name}_FILE={path} cannot be read: {reason}") from None
        return text.rstrip("\r\n")

    def __setitem__(self, name: str, value: str) -> None:
        self.environ[name] = value

    def __delitem__(self, name: str) -> None:
        del self.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.environ)

    def __len__(self) -> int:
        return len(self.environ)


def settings_env() -> environ.Env:
    """The ``env`` of the settings module: django-environ over ``SecretFileEnviron``, so
    every variable can come from a file (``SECRET_KEY_FILE=/run/secrets/secret_key``)."""
    env = environ.Env()
    env.ENVIRON = SecretFileEnviron()
    return env


def _require(env: environ.Env, name: str) -> str:
    value = env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Set it in the environment (development: run "
            "`python -m payflow.config` or `make run` to write a .env with fresh secrets)."
        )
    return value


def _is_weak_bytes(raw: bytes) -> bool:
    return len(set(raw)) < 8


def _decode_key(name: str, text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} is not valid base64.") from exc
    if len(raw) != KEY_BYTES:
        raise ImproperlyConfigured(f"{name} must decode to {KEY_BYTES} bytes, not {len(raw)}.")
    return raw


def secret_key(env: environ.Env, *, debug: bool) -> str:
    value = _require(env, "SECRET_KEY")
    if debug:
        return value
    lowered = value.lower()
    weak = (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARS
        or any(marker in lowered for marker in _WEAK_MARKERS)
    )
    if weak:
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for DEBUG=False: use at least {SECRET_KEY_MIN_LENGTH} "
            "random characters, e.g. from `secrets.token_urlsafe(64)`."
        )
    return value


def vault_keys(env: environ.Env, *, debug: bool) -> dict[int, bytes]:
    """Parse ``VAULT_KEYS="1:<base64>,2:<base64>"``: versioned AES-256 key-encryption keys.

    The highest version is the current one; older versions stay to decrypt until rotation
    has re-encrypted every record.
    """
    text = _require(env, "VAULT_KEYS")
    keyring: dict[int, bytes] = {}
    for item in text.split(","):
        version_text, sep, key_text = item.strip().partition(":")
        if not sep or not version_text.isdigit() or int(version_text) < 1:
            raise ImproperlyConfigured(
                "VAULT_KEYS must look like '1:<base64 32 bytes>,2:<base64 32 bytes>'."
            )
        version = int(version_text)
        if version in keyring:
            raise ImproperlyConfigured(f"VAULT_KEYS lists key version {version} twice.")
        key = _decode_key(f"VAULT_KEYS (version {version})", key_text.strip())
        if not debug and _is_weak_bytes(key):
            raise ImproperlyConfigured(f"VAULT_KEYS version {version} is not a random key.")
        keyring[version] = key
    return keyring


def random_key(env: environ.Env, name: str, *, debug: bool) -> bytes:
    key = _decode_key(name, _require(env, name))
    if not debug and _is_weak_bytes(key):
        raise ImproperlyConfigured(f"{name} is not a random key.")
    return key


def audit_public_key(env: environ.Env) -> str:
    """``AUDIT_PUBLIC_KEY``: the audit log's note verifier key, checked."""
    text = _require(env, "AUDIT_PUBLIC_KEY").strip()
    try:
        tlog.Verifier(text)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"AUDIT_PUBLIC_KEY is not a note verifier key ({exc}); `manage.py audit_keygen` "
            "prints a pair"
        ) from None
    return text


def witness_keys(env: environ.Env) -> list[str]:
    """``AUDIT_WITNESS_KEYS``: witnesses' cosignature verifier keys, comma-separated."""
    keys = [text.strip() for text in env.str("AUDIT_WITNESS_KEYS", default="").split(",")]
    for text in filter(None, keys):
        try:
            tlog.WitnessVerifier(text)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"AUDIT_WITNESS_KEYS holds a key that is not a witness verifier key ({exc})"
            ) from None
    return [text for text in keys if text]


def load_secrets(env: environ.Env, *, debug: bool) -> Secrets:
    """Read and validate every secret; raise ``ImproperlyConfigured`` naming the culprit."""
    return Secrets(
        secret_key=secret_key(env, debug=debug),
        vault_keys=vault_keys(env, debug=debug),
        card_fingerprint_key=random_key(env, "CARD_FINGERPRINT_KEY", debug=debug),
        audit_public_key=audit_public_key(env),
    )


def database_settings(
    url: str, *, conn_max_age: int, wsrep_sync_wait: int | None, password: str = ""
) -> dict[str, Any]:
    """Django ``DATABASES['default']`` for a ``sqlite://`` or ``mysql://`` URL.

    ``password`` (``DATABASE_PASSWORD``, usually ``DATABASE_PASSWORD_FILE``) replaces the
    URL's: the URL can then sit in plain configuration and the password in a secret file.

    SQLite (the embedded default) runs in WAL mode with a busy timeout and IMMEDIATE
    transactions so web, worker and beat can share one file. MariaDB gets utf8mb4,
    READ COMMITTED, strict mode and persistent connections.
    """
    config = environ.Env.db_url_config(url) if url.strip() else {}
    engine = config.get("ENGINE")
    if not engine:
        raise ImproperlyConfigured(
            "DATABASE_URL is empty or not a database URL: use sqlite:///path/to/file or "
            "mysql://user:password@host:3306/name (or leave it unset for the embedded SQLite)."
        )
    if password:
        config["PASSWORD"] = password
    if engine == "django.db.backends.sqlite3":
        if config["NAME"] not in ("", ":memory:"):
            Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
        }
        return config
    if engine != "django.db.backends.mysql":
        raise ImproperlyConfigured(
            f"DATABASE_URL must be sqlite:// or mysql:// (MariaDB), not {url.split(':', 1)[0]}://."
        )
    session = [
        "SET SESSION sql_mode='STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,"
        "NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE,NO_ZERO_IN_DATE'"
    ]
    if wsrep_sync_wait is not None:
        # Read-your-writes across Galera nodes (DESIGN.md section 5).
        session.append(f"SET SESSION wsrep_sync_wait={int(wsrep_sync_wait)}")
    config["OPTIONS"] = {
        "charset": "utf8mb4",
        "isolation_level": "read committed",
        "init_command": "; ".join(session),
    }
    config["CONN_MAX_AGE"] = conn_max_age
    config["CONN_HEALTH_CHECKS"] = True
    config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return config


def cache_settings(env: environ.Env) -> dict[str, Any]:
    """``CACHES["default"]`` from ``CACHE_URL``. On Redis, every command gives up after
    ``CACHE_SOCKET_TIMEOUT`` seconds (default 0.25): the cache holds rate-limit counters,
    and a Redis that hangs (paused, partitioned) must cost a request a quarter of a second,
    not the client's default of no timeout at all."""
    cache = env.cache_url("CACHE_URL", default="locmemcache://")
    if cache["BACKEND"].endswith("RedisCache"):
        timeout = env.float("CACHE_SOCKET_TIMEOUT", default=0.25)
        options = cache.setdefault("OPTIONS", {})
        options.setdefault("socket_connect_timeout", timeout)
        options.setdefault("socket_timeout", timeout)
    return cache


def acquirer_timings(*, timeout: float, claim: int, recovery_after: int) -> None:
    """Refuse timings under which a live request could still be talking to the acquirer
    when its Idempotency-Key claim expires or the recovery job takes its payment over.

    A request makes at most two acquirer calls in a row (an authorization, then an
    inquiry when it timed out), each bounded by ``ACQUIRER_TIMEOUT_SECONDS``: the claim
    (``IDEMPOTENCY_LOCK_SECONDS``) and the recovery threshold
    (``PAYMENT_RECOVERY_AFTER_SECONDS``) must each be at least three timeouts.
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ImproperlyConfigured("ACQUIRER_TIMEOUT_SECONDS must be a positive number")
    for name, value in (
        ("IDEMPOTENCY_LOCK_SECONDS", claim),
        ("PAYMENT_RECOVERY_AFTER_SECONDS", recovery_after),
    ):
        if value < 3 * timeout:
            raise ImproperlyConfigured(
                f"{name} ({value}) must be at least {3 * timeout:g}, 3 times "
                f"ACQUIRER_TIMEOUT_SECONDS ({timeout:g}): a request may spend two acquirer "
                "timeouts (an authorization and an inquiry) before it records the answer."
            )


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365.25 * 86400}


def duration(text: str) -> datetime.timedelta:
    """A duration setting: ``"365"`` (days) or a number with a unit ``s m h d y``
    (``"365d"``, ``"7y"``; a year is 365.25 days, rounded up to whole seconds)."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _DURATION_UNITS else "d"
    number = raw[:-1] if raw[-1:] in _DURATION_UNITS else raw
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise ImproperlyConfigured(
            f"{text!r} is not a duration: write a positive number of days, or e.g. 12h, 365d, 7y"
        )
    return datetime.timedelta(seconds=math.ceil(value * _DURATION_UNITS[unit]))


def archive_storage(env: environ.Env, var_dir: Path) -> dict[str, Any]:
    """``STORAGES["audit_archive"]``: where audit segment files go (``AUDIT_ARCHIVE_STORAGE``).

    ``local`` (default): a directory, files read-only once written. ``s3``: an S3-compatible
    bucket through django-storages; never overwrites a name (``file_overwrite`` off). The
    bucket should have Object Lock with a default retention (see the README): the archiver
    never needs to change an object, and a replaced object keeps its locked version."""
    kind = env.str("AUDIT_ARCHIVE_STORAGE", default="local")
    if kind == "local":
        return {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {
                "location": env.str("AUDIT_ARCHIVE_DIR", default=str(var_dir / "audit-archive")),
                "file_permissions_mode": 0o440,
                "directory_permissions_mode": 0o750,
            },
        }
    if kind != "s3":
        raise ImproperlyConfigured(f"AUDIT_ARCHIVE_STORAGE must be 'local' or 's3', not {kind!r}")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _require(env, "AUDIT_ARCHIVE_S3_BUCKET"),
            "endpoint_url": env.str("AUDIT_ARCHIVE_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AUDIT_ARCHIVE_S3_REGION", default="") or None,
            "access_key": env.str("AUDIT_ARCHIVE_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AUDIT_ARCHIVE_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("AUDIT_ARCHIVE_S3_PREFIX", default="audit"),
            "file_overwrite": False,
            "default_acl": None,
            # Object Lock needs an integrity checksum on every PUT.
            "object_parameters": {"ChecksumAlgorithm": "SHA256"},
        },
    }


def _b64_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def development_env_text(public_key: str) -> str:
    """The text of a development ``.env`` with freshly generated secrets. The audit log's
    signer key is not in it: only the sequencer reads that (its own file)."""
    return "\n".join(
        [
            "# Written by `python -m payflow.config` for local development. Not for production.",
            "DEBUG=True",
            f"SECRET_KEY={secrets.token_urlsafe(64)}",
            f"VAULT_KEYS=1:{_b64_key()}",
            f"CARD_FINGERPRINT_KEY={_b64_key()}",
            f"AUDIT_PUBLIC_KEY={public_key}",
            "",
        ]
    )


DEV_LOG_ORIGIN = "payflow.localhost/audit"


def write_development_env(path: Path) -> bool:
    """Write a development ``.env`` at ``path`` unless one exists, and beside it the
    sequencer's signer key (``audit-signing.key``, mode 0600), which ``make run`` gives to
    the sequencer alone (``AUDIT_SIGNING_KEY_FILE``). Returns True if written."""
    if path.exists():
        if "AUDIT_PUBLIC_KEY=" in path.read_text():
            return False
        # A development .env from before the transparency log: give it the log's key pair.
        signer_text = tlog.generate_signer_key(DEV_LOG_ORIGIN)
        key_path = path.parent / "audit-signing.key"
        key_path.touch(mode=0o600)
        key_path.write_text(signer_text + "\n")
        with path.open("a") as env_file:
            env_file.write(f"\nAUDIT_PUBLIC_KEY={tlog.Signer(signer_text).verifier_key()}\n")
        return True
    signer_text = tlog.generate_signer_key(DEV_LOG_ORIGIN)
    key_path = path.parent / "audit-signing.key"
    key_path.touch(mode=0o600)
    key_path.write_text(signer_text + "\n")
    path.write_text(development_env_text(tlog.Signer(signer_text).verifier_key()))
    path.chmod(0o600)
    return True


#: The files of a deployment's secrets directory (docker/compose.yaml's ``secrets:``).
DEPLOYMENT_SECRETS = (
    "secret_key",
    "vault_keys",
    "card_fingerprint_key",
    "audit_signing_key",
    "audit_public_key",
    "db_root_password",
    "db_migrate_password",
    "db_app_password",
    "db_archiver_password",
    "db_sequencer_password",
    "s3_root_password",
    "s3_archiver_secret",
    "s3_reader_secret",
    "metrics_token",
)


def deployment_secret_values(log_origin: str) -> dict[str, str]:
    """Fresh values for every file of ``DEPLOYMENT_SECRETS``. Passwords are hex: they are
    safe in any URL, shell or SQL literal without escaping."""
    signer_text = tlog.generate_signer_key(log_origin)
    values = {
        "secret_key": secrets.token_urlsafe(64),
        "vault_keys": f"1:{_b64_key()}",
        "card_fingerprint_key": _b64_key(),
        "audit_signing_key": signer_text,
        "audit_public_key": tlog.Signer(signer_text).verifier_key(),
    }
    for name in DEPLOYMENT_SECRETS:
        values.setdefault(name, secrets.token_hex(32))
    return values


def write_deployment_secrets(directory: Path, log_origin: str) -> list[str]:
    """Write each missing secret file of a deployment into ``directory`` (mode 0700); an
    existing file is never overwritten (the audit key pair is written, or kept, whole).
    Returns the names written.

    The files are mode 0444: compose bind-mounts a file secret with its host mode and
    owner, and the containers read them as their own users (uid 10001, mysql); the
    directory's 0700 keeps other host users out."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    values = deployment_secret_values(log_origin)
    pair = ("audit_signing_key", "audit_public_key")
    if any((directory / name).exists() for name in pair):
        for name in pair:
            values.pop(name)
    written = []
    for name, value in values.items():
        path = directory / name
        if path.exists():
            continue
        path.write_text(value + "\n")
        path.chmod(0o444)
        written.append(name)
    return written


def main(argv: list[str]) -> int:

    parser = argparse.ArgumentParser(
        prog="python -m payflow.config",
        description="Write a development .env (default), or a deployment's secret files.",
    )
    parser.add_argument("env_file", nargs="?", type=Path, help="development .env to write")
    parser.add_argument(
        "--deployment-secrets", type=Path, metavar="DIR", help="write a deployment's secrets"
    )
    parser.add_argument("--log-origin", help="the audit log's origin, e.g. example.com/audit")
    args = parser.parse_args(argv)
    if args.deployment_secrets:
        if not args.log_origin:
            parser.error("--deployment-secrets needs --log-origin (e.g. payflow.example.com/audit)")
        try:
            written = write_deployment_secrets(args.deployment_secrets, args.log_origin)
        except ValueError as exc:
            parser.error(f"{args.log_origin!r} cannot name the log's key: {exc}")
        kept = len(DEPLOYMENT_SECRETS) - len(written)
        print(f"wrote {len(written)} secret files in {args.deployment_secrets} ({kept} kept)")
        return 0
    target = args.env_file or Path(__file__).resolve().parent.parent / ".env"
    if write_development_env(target):
        print(f"wrote {target} with fresh development secrets")
    else:
        print(f"{target} exists; left as it is")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
