"""Waiting for a dependency instead of crashing: a worker (re)started while the broker or PostgreSQL
is down must wait for it (the chaos suite restarts workers at exactly such moments)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Stopped(RuntimeError):
    """The worker was asked to stop while it waited."""


def wait_for(fn: Callable[[], T], what: str, stop: threading.Event | None = None, max_wait_s: float = 10.0,
             first_wait_s: float = 0.5) -> T:
    """Call ``fn`` until it returns, with capped exponential backoff; raise Stopped on ``stop``."""
    delay = first_wait_s
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any failure of a dependency means "not yet"
            log.warning("%s unavailable (%s: %s); retrying in %.1fs", what, type(exc).__name__,
                        str(exc).strip()[:200], delay)
        if stop is not None:
            if stop.wait(delay):
                raise Stopped(f"stopped while waiting for {what}")
        else:
            threading.Event().wait(delay)
        delay = min(delay * 2, max_wait_s)
