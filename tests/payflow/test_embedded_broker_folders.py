"""The embedded Celery broker (kombu's filesystem transport) keeps every file under var/.

Its exchange tables went to ``./control`` (kombu's default) beside manage.py, and a copy was
committed. A real process queues a task with the embedded defaults, from the repository root
as `make run` does, and nothing appears outside the var directory.
"""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

QUEUE_A_TASK = (
    "from payflow.tasks import ping\n"
    "ping.apply_async(ignore_result=True)\n"
    "from django.conf import settings\n"
    "print(settings.CELERY_BROKER_URL)\n"
)


def test_queueing_a_task_on_the_embedded_broker_writes_only_under_var(tmp_path):
    var = tmp_path / "var"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CELERY_", "DATABASE_URL", "DJANGO_SETTINGS_MODULE"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "payflow.settings",
            "PAYFLOW_VAR_DIR": str(var),
            "SECRET_KEY": secrets.token_urlsafe(64),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
    )
    before = set(os.listdir(ROOT))
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", QUEUE_A_TASK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "filesystem://"
    assert set(os.listdir(ROOT)) - before == set()
    assert any((var / "celery" / "control").iterdir())  # the exchange table, under var/
    assert any((var / "celery" / "queue").iterdir())  # and the queued message
