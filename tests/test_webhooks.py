"""Webhooks for assets.annotated (sinks/webhook_sink.py, api/webhook_routes.py) with real receivers on 127.0.0.1
(allow-listed here): signed deliveries accepted, a bad signature rejected by the receiver, retries with backoff,
dead letters after N tries, the SSRF guard at registration, one delivery per distinct event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from argus.workers import Supervisor, Worker
from core import kafka
from core.settings import Settings
from schemas.events import dump
from sinks.webhook_sink import EVENT_HEADER, SIGNATURE_HEADER, sign, verify
from tests.support.events import annotated_event

pytestmark = pytest.mark.integration
ADMIN = {"X-API-Key": "dev-key"}


class Receiver(BaseHTTPRequestHandler):
    secrets: dict[str, str] = {}  # path -> the secret this receiver verifies with
    fail_first: dict[str, int] = {}  # path -> answer 503 this many times first
    seen: list[tuple[str, str, int, bool]] = []  # (path, event id, status answered, signature ok)
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = verify(self.secrets.get(self.path, "?"), self.headers.get(SIGNATURE_HEADER), body)
        with self.lock:
            if self.fail_first.get(self.path, 0) > 0:
                self.fail_first[self.path] -= 1
                status = 503
            else:
                status = 204 if ok else 401
            self.seen.append((self.path, self.headers.get(EVENT_HEADER, ""), status, ok))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.secrets, Receiver.fail_first, Receiver.seen = {}, {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_signature_helpers() -> None:
    body = b'{"a":1}'
    header = sign("s3cret", body)
    assert verify("s3cret", header, body)
    assert not verify("other", header, body)
    assert not verify("s3cret", header, body + b" ")
    assert not verify("s3cret", sign("s3cret", body, t=int(time.time()) - 3600), body)  # replayed later
    assert not verify("s3cret", None, body) and not verify("s3cret", "garbage", body)


def test_webhooks_delivered_retried_dead_lettered(env: Settings, receiver: str) -> None:
    # the SSRF guard: loopback is refused unless allow-listed, and only http(s)
    plain = TestClient(create_app(env))
    assert plain.post("/v1/webhooks", json={"url": f"{receiver}/good"}, headers=ADMIN).status_code == 400
    assert plain.post("/v1/webhooks", json={"url": "file:///etc/passwd"}, headers=ADMIN).status_code == 400
    assert plain.post("/v1/webhooks", json={"url": "http://169.254.169.254/x"}, headers=ADMIN).status_code == 400
    assert plain.get("/v1/webhooks").status_code == 401  # admin only

    s = env.model_copy(deep=True)
    s.webhooks.allow_networks = ["127.0.0.0/8"]
    s.webhooks.backoff_initial_s, s.webhooks.max_attempts, s.webhooks.poll_s = 0.2, 3, 0.1
    c = TestClient(create_app(s))
    hooks = {}
    for path in ("/good", "/flaky", "/wrong"):
        r = c.post("/v1/webhooks", json={"url": f"{receiver}{path}", "description": path}, headers=ADMIN)
        assert r.status_code == 201, r.text
        hooks[path] = r.json()
        Receiver.secrets[path] = r.json()["secret"]
    Receiver.secrets["/wrong"] = "whsec_not-the-registered-secret"  # this receiver rejects every signature
    Receiver.fail_first["/flaky"] = 2

    # the receiver rejects a forged request
    forged = httpx.post(f"{receiver}/good", content=b"{}", headers={SIGNATURE_HEADER: sign("guess", b"{}")})
    assert forged.status_code == 401
    Receiver.seen.clear()

    topic = s.topic(kafka.TOPIC_ANNOTATED)
    kafka.ensure_topics(s, [topic])
    producer = kafka.producer(s)
    events = [annotated_event("d" * 64, "pdq"), annotated_event("e" * 64, "pdq")]
    for ev in [*events, events[0]]:  # + a byte-identical re-emission: delivered once per webhook
        producer.produce(topic, key=ev.asset_id, value=dump(ev))
    assert producer.flush(30) == 0

    sup = Supervisor(s, [Worker("webhooks", ["run", "webhooks"])])
    sup.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ds = {p: c.get(f"/v1/webhooks/{h['webhook_id']}/deliveries", headers=ADMIN).json()
                  for p, h in hooks.items()}
            if all(len(v) == 2 and all(d["status"] != "pending" for d in v) for v in ds.values()):
                break
            time.sleep(0.5)
        assert not sup.dead(), sup.dead()
    finally:
        sup.stop()
    ids = {ev.event_id for ev in events}
    assert {d["event_id"] for d in ds["/good"]} == ids
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in ds["/good"]), ds["/good"]
    assert all(d["status"] == "delivered" for d in ds["/flaky"]), ds["/flaky"]
    assert sum(d["attempts"] for d in ds["/flaky"]) == 4  # two 503s, then both delivered
    assert all(d["status"] == "dead" and d["attempts"] == 3 and d["last_status"] == 401 for d in ds["/wrong"])
    good = [(e, st, ok) for p, e, st, ok in Receiver.seen if p == "/good"]
    assert sorted(e for e, _, _ in good) == sorted(ids) and all(st == 204 and ok for _, st, ok in good)
    wrong = [(st, ok) for p, _, st, ok in Receiver.seen if p == "/wrong"]
    assert len(wrong) == 6 and all(st == 401 and not ok for st, ok in wrong)  # bad signature rejected, 3 tries x 2
    listed = {h["webhook_id"]: h for h in c.get("/v1/webhooks", headers=ADMIN).json()}
    assert listed[hooks["/wrong"]["webhook_id"]]["dead"] == 2 and "secret" not in listed[hooks["/good"]["webhook_id"]]
    assert c.delete(f"/v1/webhooks/{hooks['/good']['webhook_id']}", headers=ADMIN).json()["removed"]
