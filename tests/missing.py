"""A real part the suite needs and does not find.

``make test`` installs every part that can be installed here (Debian packages, the Python
extras). Under ``CI=true`` a missing installable part is therefore a broken set-up, and
``missing_part`` fails the test with its reason instead of skipping it, so a green run
never hides a suite that did not run. Outside CI (a developer's partial set-up) it skips.
A part this kind of machine cannot have at all (the docker compose plugin: no Debian
package) is skipped everywhere, with ``cannot_run_here``, its reason printed.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_part(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{reason} (CI=true: make test installs it; the set-up is broken)")
    pytest.skip(reason, allow_module_level=True)


def cannot_run_here(reason: str) -> NoReturn:
    pytest.skip(reason)


def import_or_missing(module: str):
    try:
        return __import__(module)
    except ImportError:
        missing_part(f"the Python package {module} is not installed (make install)")
