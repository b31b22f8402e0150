"""Webhooks for subscribers without Kafka: every registered URL receives each ``assets.annotated`` event.

Two halves in one worker (``argus run webhooks``):

1. ``WebhookSink`` (exactly-once sink runtime, sinks/runtime.py): per event, one ``webhook_deliveries`` row per
   active webhook, inserted in the transaction that stores the consumed offsets (primary key (webhook, event id):
   a replayed or byte-identical re-emitted event is not enqueued twice);
2. ``Deliverer``: POSTs due deliveries, signed, through the SSRF guard (core/netguard.py, ``webhooks.allow_networks``
   for exceptions, no redirects), a lease per attempt (``next_attempt_at``) so a crashed worker's in-flight
   attempt is retried; a non-2xx answer or a network error -> retried with capped exponential backoff; after
   ``webhooks.max_attempts`` the delivery is dead-lettered (status ``dead``, last status and error kept; the admin
   API lists it). At-least-once: a receiver deduplicates by ``X-Argus-Event-Id``.

Signature: ``X-Argus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; ``verify`` checks it
(constant-time, with a timestamp tolerance against replays).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time

import httpx
from confluent_kafka import Message
from prometheus_client import Counter

from core import db, kafka, metrics, netguard
from core.settings import Settings
from schemas.events import AssetAnnotated, parse
from sinks.runtime import SinkRunner, SinkWriter

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Argus-Signature"
EVENT_HEADER = "X-Argus-Event-Id"
LEASE_EXTRA_S = 5.0

DELIVERED = Counter("argus_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """What a receiver runs: the header's HMAC matches and its timestamp is recent."""
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(settings: Settings, url: str) -> None:
    """Registration-time check (the delivery checks again at connect time: DNS may change): http(s), a host,
    and every address it resolves to allowed by the SSRF policy. Raises netguard.FetchError."""
    try:
        u = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise netguard.BadURL(f"invalid URL: {exc}") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise netguard.BadURL("a webhook URL is http(s)://host/...")
    allow = netguard.parse_networks(settings.webhooks.allow_networks)
    for ip in netguard.resolve(u.host, u.port or (443 if u.scheme == "https" else 80)):
        netguard.check_address(ip, allow)


class WebhookSink(SinkWriter):
    name = "webhooks"

    def __init__(self, settings: Settings, models: list[str] | None = None) -> None:
        super().__init__(settings)

    def topics(self) -> list[str]:
        return [self.settings.topic(kafka.TOPIC_ANNOTATED)]

    def write(self, conn: db.Conn, msgs: list[Message]) -> int:
        applied = 0
        for m in msgs:
            ev = parse(m.value(), AssetAnnotated)
            cur = conn.execute(
                """INSERT INTO webhook_deliveries (webhook_id, event_id, asset_id, payload)
                   SELECT webhook_id, %s, %s, %s FROM webhooks WHERE active
                   ON CONFLICT (webhook_id, event_id) DO NOTHING""",
                (ev.event_id, ev.asset_id, m.value()))
            applied += cur.rowcount
        return applied


class Deliverer:
    """POSTs due deliveries until ``stop`` is set (one per installation is enough; several are safe)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        cfg = settings.webhooks
        self.client = netguard.guarded_client(settings, allow_networks=cfg.allow_networks, timeout_s=cfg.timeout_s,
                                              follow_redirects=False)
        self.health = metrics.Health("webhooks")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.health.beat()
            try:
                n = self.deliver_due()
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: wait and try again, never die
                log.warning("webhooks: delivery pass failed (%s); retrying", exc)
                n = 0
            if n == 0:
                stop.wait(self.settings.webhooks.poll_s)
        self.client.close()

    def _claim(self, limit: int = 20) -> list[dict[str, object]]:
        lease = self.settings.webhooks.timeout_s + LEASE_EXTRA_S
        with db.transaction(self.settings) as conn:
            rows = conn.execute(
                """WITH due AS (
                       SELECT webhook_id, event_id FROM webhook_deliveries
                       WHERE status = 'pending' AND next_attempt_at <= now()
                       ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED)
                   UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => %s)
                   FROM due, webhooks w
                   WHERE d.webhook_id = due.webhook_id AND d.event_id = due.event_id AND w.webhook_id = d.webhook_id
                   RETURNING d.webhook_id, d.event_id, d.payload, d.attempts, w.url, w.secret""",
                (limit, lease)).fetchall()
        return [dict(r) for r in rows]

    def deliver_due(self) -> int:
        rows = self._claim()
        for r in rows:
            self._attempt(r)
        return len(rows)

    def _attempt(self, r: dict[str, object]) -> None:
        body = bytes(r["payload"])  # type: ignore[call-overload]
        attempt = int(r["attempts"]) + 1  # type: ignore[call-overload]
        headers = {"Content-Type": "application/json", EVENT_HEADER: str(r["event_id"]),
                   "X-Argus-Webhook-Id": str(r["webhook_id"]), "X-Argus-Attempt": str(attempt),
                   SIGNATURE_HEADER: sign(str(r["secret"]), body)}
        status: int | None = None
        error: str | None = None
        permanent = False
        try:
            resp = self.client.post(str(r["url"]), content=body, headers=headers)
            status = resp.status_code
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except netguard.FetchError as exc:
            error, permanent = str(exc), exc.permanent
        except httpx.HTTPError as exc:
            cause = exc.__context__
            if isinstance(cause, netguard.FetchError):  # the SSRF guard refused the address at connect time
                error, permanent = str(cause), cause.permanent
            else:
                error = f"{type(exc).__name__}: {exc}"
        self._record(r, attempt, status, error, permanent)

    def _record(self, r: dict[str, object], attempt: int, status: int | None, error: str | None,
                permanent: bool) -> None:
        cfg = self.settings.webhooks
        key = (r["webhook_id"], r["event_id"])
        with db.transaction(self.settings) as conn:
            if error is None:
                conn.execute("""UPDATE webhook_deliveries SET status='delivered', attempts=%s, last_status=%s,
                                last_error=NULL, delivered_at=now() WHERE webhook_id=%s AND event_id=%s""",
                             (attempt, status, *key))
                DELIVERED.labels("delivered").inc()
                return
            dead = permanent or attempt >= cfg.max_attempts
            wait = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
            conn.execute("""UPDATE webhook_deliveries SET status=%s, attempts=%s, last_status=%s, last_error=%s,
                            next_attempt_at = now() + make_interval(secs => %s)
                            WHERE webhook_id=%s AND event_id=%s""",
                         ("dead" if dead else "pending", attempt, status, (error or "")[:500], wait, *key))
        DELIVERED.labels("dead" if dead else "retry").inc()
        log.warning("webhook %s event %s attempt %d: %s%s", key[0], key[1], attempt, error,
                    " -> dead-lettered" if dead else f"; retry in {wait:.0f}s")


def run_worker(settings: Settings) -> None:
    """``argus run webhooks``: the enqueuing sink in the main thread, the deliverer beside it."""
    runner = SinkRunner(settings, WebhookSink(settings))
    deliverer = Deliverer(settings)
    thread = threading.Thread(target=deliverer.run, args=(runner.stop_event,), name="webhook-deliverer", daemon=True)
    runner.install_signal_handlers()
    thread.start()
    try:
        runner.run()
    finally:
        runner.stop_event.set()
        thread.join(settings.webhooks.timeout_s + 5)
