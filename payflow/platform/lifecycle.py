"""What every long-running process (the audit sequencer, the outbox relay) does alike."""

from __future__ import annotations

import signal
from collections.abc import Callable


def stop_on_signals() -> Callable[[], bool]:
    """Install SIGTERM and SIGINT handlers that ask the process to stop; returns the check
    its loop calls between steps (a step is never cut in the middle)."""
    stopping = {"now": False}

    def stop(signum, frame) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return lambda: stopping["now"]
