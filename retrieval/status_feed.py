"""Live per-model status of assets: PostgreSQL's NOTIFY on ``argus_asset_status`` (migration 0008), heard
by ONE listening connection per process and fanned out to subscribers (the web app's server-sent events).

NOTIFY is delivered on commit, so a subscriber sees exactly the states the sinks committed. A subscriber
first reads the current states (``current_states``), then follows the feed; when the listening connection
drops, every subscriber gets a ``RESYNC`` marker and reads the states again, so nothing is missed across a
reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from core import db
from core.settings import Settings

CHANNEL = "argus_asset_status"
RESYNC: dict[str, Any] = {"resync": True}  # "read the current states again" (the listener reconnected)
log = logging.getLogger(__name__)


def current_states(settings: Settings, asset_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The committed per-model states of these assets (models without a row are still pending)."""
    with db.connect(settings) as conn:
        return [dict(r) for r in conn.execute(
            "SELECT asset_id, model, status, left(reason, 500) AS reason FROM asset_model_status "
            "WHERE asset_id = ANY(%s) ORDER BY asset_id, model", (list(asset_ids),))]


@dataclass(eq=False)
class Subscription:
    asset_ids: frozenset[str]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def offer(self, item: dict[str, Any]) -> None:
        """Called on the event loop's thread. A subscriber that falls 1000 events behind is told to resync."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)


class StatusFeed:
    """``sub = feed.subscribe(ids)`` (on an event loop) -> ``await sub.queue.get()`` ... ``feed.unsubscribe(sub)``.
    The listening thread starts with the first subscriber and reconnects with capped backoff."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.connected = threading.Event()

    def subscribe(self, asset_ids: Iterable[str]) -> Subscription:
        sub = Subscription(frozenset(asset_ids), asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="status-feed", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _dispatch(self, item: dict[str, Any], asset_id: str | None) -> None:
        with self._lock:
            subs = [s for s in self._subs if asset_id is None or asset_id in s.asset_ids]
        for s in subs:
            with contextlib.suppress(RuntimeError):  # that subscriber's loop closed meanwhile
                s.loop.call_soon_threadsafe(s.offer, item)

    def _listen(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    if not first:  # states may have changed while we were away
                        self._dispatch(RESYNC, None)
                    first, backoff = False, 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            try:
                                item = json.loads(note.payload)
                            except ValueError:
                                continue
                            self._dispatch(item, item.get("asset_id"))
                        with self._lock:
                            if not self._subs:  # idle: drop the connection until someone subscribes
                                self._thread = None
                                self.connected.clear()
                                return
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("status feed: %s; reconnecting in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self.connected.clear()
