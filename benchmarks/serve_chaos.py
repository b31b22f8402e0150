"""Chaos against ``argus serve``: kill -9 every kind of worker and the supervisor while assets stream in.

    .venv/bin/python -m benchmarks.serve_chaos --assets 300 --duration 300 [--seed 7] [--doc docs/chaos-serve.md]

What issue 16 asks of the single-host service, measured on the real thing: ``argus serve`` runs in a child
process with its embedded stack, every default worker, the aggregate, the webhook deliverer and the API, as
the systemd unit runs it. While a client thread uploads the assets through ``POST /v1/assets`` (retrying a
refused or failed upload with the same bytes, which the API deduplicates by sha256) and a probe thread asks
``/healthz`` every 200 ms, the chaos loop picks components from a shuffled cycle of every worker in the
service's state file plus the supervisor itself, and SIGKILLs each by PID:

- a worker: the supervisor must notice and restart it (its own backoff); recovered when the worker runs again
  under a new PID and its own progress counter moves (``benchmarks.chaos.progress_signal``), or its own backlog
  (``argus status``'s lag) is empty;
- the supervisor: its workers get SIGTERM from the kernel (``PR_SET_PDEATHSIG``) and drain; after a pause (what
  systemd's ``RestartSec`` does) a new ``argus serve`` starts, keeps the running servers, reaps nothing it did not
  start and restarts every worker; recovered when its state file says every worker runs and /healthz answers.

Afterwards the service keeps running until ``argus.verify`` has checked every asset (every expected model's
annotation exactly once, the search documents, every sink's offsets against the topics), and then the figures
the issue names are read back from the outside: the ``assets.annotated`` topic (exactly one distinct event per
asset; re-emissions counted and checked byte-identical), the webhook receiver's log (every distinct event
delivered at least once, with its id; repeats counted), and the API's availability seen by the probe.

The servers (PostgreSQL, the broker, the object store, Triton) are not killed here: ``benchmarks.chaos`` does
that against the bare workers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from api.web_routes import expected_models
from argus.service import worker_lag
from argus.stack.manager import EmbeddedStack
from argus.stack.ports import settings_for_tests
from argus.verify import Verdict, read_topic, wait_until_consistent
from benchmarks.chaos import make_assets, progress_signal
from core import db, kafka
from core.service_state import ServiceState, live_state, pid_alive
from core.settings import SETTINGS_ENV, Settings
from schemas.events import AssetAnnotated, parse
from sinks.webhook_sink import EVENT_HEADER, SIGNATURE_HEADER, verify

REPO = Path(__file__).resolve().parent.parent
SUPERVISOR = "supervisor"


# ------------------------------------------------------------------------------------------ the outside world
class WebhookLog(BaseHTTPRequestHandler):
    """A subscriber's receiver: checks the signature, answers 204, and remembers every event id it got."""

    secret = ""
    seen: list[tuple[str, bool]] = []  # (event id, signature ok)
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = verify(self.secret, self.headers.get(SIGNATURE_HEADER), body)
        with self.lock:
            self.seen.append((self.headers.get(EVENT_HEADER, ""), ok))
        self.send_response(204 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Probe(threading.Thread):
    """GET /healthz every ``every_s``: the API's availability as a client sees it."""

    def __init__(self, url: str, every_s: float = 0.2) -> None:
        super().__init__(name="chaos-probe", daemon=True)
        self.url, self.every_s = url, every_s
        self.ok = self.failed = 0
        self.longest_outage_s = 0.0
        self._down_since: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self.stop.is_set():
                t = time.monotonic()
                try:
                    good = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    good = False
                if good:
                    self.ok += 1
                    if self._down_since is not None:
                        self.longest_outage_s = max(self.longest_outage_s, t - self._down_since)
                        self._down_since = None
                else:
                    self.failed += 1
                    if self._down_since is None:
                        self._down_since = t
                self.stop.wait(max(0.0, self.every_s - (time.monotonic() - t)))

    @property
    def availability(self) -> float:
        return self.ok / max(1, self.ok + self.failed)


# ------------------------------------------------------------------------------------------ the report
@dataclass
class Episode:
    component: str
    killed_at: float  # seconds since the start of the chaos
    recover_s: float | None = None  # kill -> running again and making progress (None: timed out)


@dataclass
class ServeChaosReport:
    assets: int
    seed: int
    episodes: list[Episode] = field(default_factory=list)
    uploads_retried: int = 0
    chaos_s: float = 0.0
    drain_s: float = 0.0
    availability: float = 0.0
    availability_probes: int = 0
    longest_outage_s: float = 0.0
    verdict: Verdict | None = None
    annotated: dict[str, Any] = field(default_factory=dict)
    webhooks: dict[str, Any] = field(default_factory=dict)
    degraded_at_end: dict[str, str] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        kills = Counter(e.component for e in self.episodes)
        by: dict[str, list[float]] = {}
        for e in self.episodes:
            if e.recover_s is not None:
                by.setdefault(e.component, []).append(e.recover_s)
        v = self.verdict
        return {
            "assets": self.assets, "seed": self.seed, "kills_total": len(self.episodes),
            "kills": dict(sorted(kills.items())),
            "not_recovered": [e.component for e in self.episodes if e.recover_s is None],
            "recovery_s": {c: {"median": round(statistics.median(x), 1), "max": round(max(x), 1)}
                           for c, x in sorted(by.items())},
            "uploads_retried": self.uploads_retried, "chaos_s": round(self.chaos_s), "drain_s": round(self.drain_s),
            "api_availability": round(self.availability, 4), "api_probes": self.availability_probes,
            "api_longest_outage_s": round(self.longest_outage_s, 1),
            "verified": bool(v and v.ok), "missing": v.missing if v else None,
            "duplicated": v.duplicated if v else None, "problems": v.problems if v else ["not verified"],
            "annotated": self.annotated, "webhooks": self.webhooks, "degraded_at_end": self.degraded_at_end,
        }


# ------------------------------------------------------------------------------------------ the run
class ServeChaos:
    def __init__(self, settings: Settings, assets: list[tuple[str, bytes]], duration_s: float, seed: int,
                 components: list[str] | None = None, manage_stack: bool = True,
                 supervisor_down_s: tuple[float, float] = (1.0, 5.0), gap_s: tuple[float, float] = (2.0, 8.0),
                 recover_timeout_s: float = 180.0, drain_timeout_s: float = 1200.0, log: Any = print) -> None:
        self.settings = settings
        self.assets = assets
        self.duration_s = duration_s
        self.rng = random.Random(seed)
        self.only = components
        self.manage_stack = manage_stack  # False: the servers are someone else's (a test session's), never stopped
        self.supervisor_down_s, self.gap_s = supervisor_down_s, gap_s
        self.recover_timeout_s, self.drain_timeout_s = recover_timeout_s, drain_timeout_s
        self.report = ServeChaosReport(assets=len(assets), seed=seed)
        self.api = f"http://127.0.0.1:{settings.ports.api}"
        self.key = settings.api_keys[0]
        self.ids: list[str] = []
        self._ids_lock = threading.Lock()
        self._ingest_done = threading.Event()
        self.serve: subprocess.Popen[bytes] | None = None
        self.serve_starts = 0
        self.log = log
        self.t0 = 0.0

    # -- the service ------------------------------------------------------------------------------
    def _start_serve(self) -> None:
        env = {**os.environ, SETTINGS_ENV: self.settings.model_dump_json()}
        self.serve_starts += 1
        self.settings.abs_state_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.settings.abs_state_dir / f"serve-{self.serve_starts}.log", "wb")  # noqa: SIM115 - the child keeps it
        argv = [sys.executable, "-m", "argus.cli", "serve", *([] if self.manage_stack else ["--no-stack"])]
        self.serve = subprocess.Popen(argv, cwd=REPO, env=env,
                                      stdout=out, stderr=subprocess.STDOUT)

    def _state(self) -> ServiceState | None:
        st = live_state(self.settings)
        return st if st is not None and self.serve is not None and st.supervisor_pid == self.serve.pid else None

    def _all_running(self) -> bool:
        st = self._state()
        return bool(st and st.workers and all(w.state == "running" and w.pid and pid_alive(w.pid)
                                              for w in st.workers.values()))

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.api}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, cond: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        return False

    # -- the client -------------------------------------------------------------------------------
    def _register_webhook(self, receiver: str) -> None:
        while True:  # the API may still be starting
            try:
                r = httpx.post(f"{self.api}/v1/webhooks", json={"url": receiver, "description": "chaos"},
                               headers={"X-API-Key": self.key}, timeout=10)
                r.raise_for_status()
                WebhookLog.secret = r.json()["secret"]
                return
            except httpx.HTTPError:
                time.sleep(0.5)

    def _ingest(self) -> None:
        pace = self.duration_s / max(1, len(self.assets))  # uploads arrive during the whole run
        start = time.monotonic()
        with httpx.Client(base_url=self.api, headers={"X-API-Key": self.key}, timeout=30) as client:
            for i, (name, data) in enumerate(self.assets):
                delay = start + i * pace - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                while True:  # a client retries a failed upload with the same bytes (deduplicated by sha256)
                    try:
                        r = client.post("/v1/assets", files={"file": (name, data, "image/jpeg")},
                                        data={"title": f"Chaos photo {i}: a scene from the newsroom"})
                        if r.status_code in (200, 201, 202):
                            break
                    except httpx.HTTPError:
                        pass
                    self.report.uploads_retried += 1
                    time.sleep(0.5)
                with self._ids_lock:
                    self.ids.append(r.json()["asset_id"])
        self._ingest_done.set()

    def _idle(self) -> bool:
        """Nothing left to make progress on (every upload in and every asset's aggregate emitted)."""
        if not self._ingest_done.is_set():
            return False
        try:
            with db.connect(self.settings) as conn:
                n = db.scalar(conn, """SELECT count(*) FROM asset_aggregates
                                       WHERE asset_id = ANY(%s) AND emitted_event_id IS NOT NULL""", (list(self.ids),))
        except Exception:  # noqa: BLE001 - PostgreSQL busy
            return False
        return int(n) >= len(self.ids)

    # -- one fault --------------------------------------------------------------------------------
    def _episode(self, comp: str) -> Episode:
        ep = Episode(comp, round(time.monotonic() - self.t0, 1))
        t = time.monotonic()
        if comp == SUPERVISOR:
            assert self.serve is not None
            os.kill(self.serve.pid, signal.SIGKILL)
            self.serve.wait()
            time.sleep(self.rng.uniform(*self.supervisor_down_s))  # systemd's RestartSec
            self._start_serve()
            if self._wait(lambda: self._all_running() and self._api_up(), self.recover_timeout_s):
                ep.recover_s = round(time.monotonic() - t, 1)
        else:
            st = self._state()
            pid = st.workers[comp].pid if st and comp in st.workers else None
            if pid is None or not pid_alive(pid):  # in backoff: wait for its restart first
                self._wait(lambda: (s := self._state()) is not None and bool(s.workers[comp].pid), 30)
                st = self._state()
                pid = st.workers[comp].pid if st else None
            if pid is None:
                self.log(f"  ! {comp} has no PID to kill; skipped")
                return ep
            before = progress_signal(self.settings, comp) if comp.startswith(("processor-", "sink-", "relay")) else None
            os.kill(pid, signal.SIGKILL)

            def recovered() -> bool:
                s = self._state()
                w = s.workers.get(comp) if s else None
                if not (w and w.state == "running" and w.pid and w.pid != pid and pid_alive(w.pid)):
                    return False
                if comp == "api":
                    return self._api_up()
                if before is not None and (now := progress_signal(self.settings, comp)) is not None and now > before:
                    return True
                try:  # nothing of its own left to do (its backlog as `argus status` shows it) counts too
                    lag = worker_lag(self.settings, s.workers).get(comp)  # type: ignore[union-attr]
                except Exception:  # noqa: BLE001 - PostgreSQL busy
                    return False
                return lag is None or not lag.records  # None: a worker without a queue

            if self._wait(recovered, self.recover_timeout_s):
                ep.recover_s = round(time.monotonic() - t, 1)
        self.log(f"  t={ep.killed_at:6.1f}s kill -9 {comp:<28} recovered in "
                 f"{ep.recover_s if ep.recover_s is not None else 'TIMEOUT'}s")
        return ep

    # -- the whole run ----------------------------------------------------------------------------
    def run(self) -> ServeChaosReport:
        WebhookLog.seen = []
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), WebhookLog)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        probe = Probe(f"{self.api}/healthz")
        self._start_serve()
        try:
            self.log("  starting argus serve (embedded stack, every worker, the API) ...")
            if not self._wait(lambda: self._all_running() and self._api_up(), 900):
                raise RuntimeError(f"argus serve did not come up; see {self.settings.abs_state_dir}/serve-1.log")
            st = self._state()
            assert st is not None
            components = self.only or [*st.workers, SUPERVISOR]
            self.log(f"  up: {len(st.workers)} workers ({', '.join(st.workers)})")
            self._register_webhook(f"http://127.0.0.1:{httpd.server_address[1]}/hook")
            probe.start()
            self.t0 = time.monotonic()
            ingest = threading.Thread(target=self._ingest, name="chaos-ingest", daemon=True)
            ingest.start()
            cycle: list[str] = []
            hit: set[str] = set()
            while time.monotonic() - self.t0 < self.duration_s or hit != set(components):
                if not cycle:
                    cycle = self.rng.sample(components, len(components))
                comp = cycle.pop()
                self.report.episodes.append(self._episode(comp))
                hit.add(comp)
                time.sleep(self.rng.uniform(*self.gap_s))
            ingest.join()
            self.report.chaos_s = time.monotonic() - self.t0
            self.log(f"  chaos over after {self.report.chaos_s:.0f}s ({len(self.report.episodes)} kills); "
                     "draining and verifying")
            models = sorted(expected_models(self.settings)["image"])
            verdict, self.report.drain_s = wait_until_consistent(self.settings, self.ids, self.drain_timeout_s,
                                                                 models=models)
            self.report.verdict = verdict
            self._wait(self._idle, 120)  # the last aggregates, then the relay and the deliverer
            self._wait(lambda: self._webhooks_settled(), 120)
            probe.stop.set()
            probe.join()
            self.report.availability = probe.availability
            self.report.availability_probes = probe.ok + probe.failed
            self.report.longest_outage_s = probe.longest_outage_s
            self.report.annotated = self._annotated_events()
            self.report.webhooks = self._webhook_figures()
            st = self._state()
            self.report.degraded_at_end = st.degraded() if st else {"supervisor": "not running"}
        finally:
            probe.stop.set()
            if self.serve is not None and self.serve.poll() is None:
                self.serve.send_signal(signal.SIGTERM)  # drains the workers and stops the stack it started
                try:
                    self.serve.wait(300)
                except subprocess.TimeoutExpired:
                    self.serve.kill()
            if self.manage_stack:
                EmbeddedStack(self.settings).down()  # whatever a killed supervisor left running
            httpd.shutdown()
            httpd.server_close()
        return self.report

    # -- read back from the outside -----------------------------------------------------------------
    def _webhooks_settled(self) -> bool:
        try:
            with db.connect(self.settings) as conn:
                pending = db.scalar(conn, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
                outbox = db.scalar(conn, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
        except Exception:  # noqa: BLE001
            return False
        return int(pending) == 0 and int(outbox) == 0

    def _annotated_events(self) -> dict[str, Any]:
        raw = [m.value() or b"" for m in read_topic(self.settings, self.settings.topic(kafka.TOPIC_ANNOTATED))]
        first: dict[str, bytes] = {}
        per_asset: dict[str, set[str]] = {}
        identical = differing = 0
        for r in raw:
            ev = parse(r, AssetAnnotated)
            if ev.event_id in first:
                identical += first[ev.event_id] == r
                differing += first[ev.event_id] != r
            first.setdefault(ev.event_id, r)
            per_asset.setdefault(ev.asset_id, set()).add(ev.event_id)
        ids = set(self.ids)
        self.event_ids = set(first)
        return {
            "events_on_topic": len(raw), "distinct_events": len(first),
            "assets_with_one_distinct_event": sum(1 for a in ids if len(per_asset.get(a, ())) == 1),
            "assets_without_event": len(ids - set(per_asset)),
            "assets_with_several_distinct_events": sum(1 for a in ids if len(per_asset.get(a, ())) > 1),
            "re_emissions_byte_identical": identical, "re_emissions_differing": differing,
        }

    def _webhook_figures(self) -> dict[str, Any]:
        with WebhookLog.lock:
            seen = list(WebhookLog.seen)
        got = Counter(e for e, _ok in seen)
        wanted = getattr(self, "event_ids", set())
        with db.connect(self.settings) as conn:  # the deliverer's own bookkeeping, to explain a shortfall
            rows = conn.execute("""SELECT status, count(*) AS n, max(last_error) AS error
                                   FROM webhook_deliveries GROUP BY status""").fetchall()
        return {
            "stored": {r["status"]: {"n": r["n"], "last_error": r["error"]} for r in rows},
            "deliveries": len(seen), "distinct_events_delivered": len(set(got) & wanted),
            "events_never_delivered": len(wanted - set(got)), "repeat_deliveries": sum(n - 1 for n in got.values()),
            "bad_signatures": sum(1 for _e, ok in seen if not ok),
        }


def render_markdown(report: ServeChaosReport, command: str, machine: str) -> str:
    f = report.figures()
    a, w = f["annotated"], f["webhooks"]
    lines = [
        f"Command: `{command}` ({machine})", "",
        "| figure | value |", "|---|---|",
        f"| assets uploaded through the API | {f['assets']} |",
        f"| chaos / drain until verified | {f['chaos_s']} s / {f['drain_s']} s |",
        f"| kills (kill -9), total | {f['kills_total']} |",
        *[f"| kills: {c} | {n} |" for c, n in f["kills"].items()],
        f"| kills not recovered within the timeout | {len(f['not_recovered'])} {f['not_recovered'] or ''} |",
        f"| uploads retried by the client | {f['uploads_retried']} |",
        f"| API availability (GET /healthz every 200 ms) | {f['api_availability'] * 100:.2f} % of "
        f"{f['api_probes']} probes; longest outage {f['api_longest_outage_s']} s |",
        f"| **missing** (annotation rows + search docs) | **{f['missing']}** |",
        f"| **duplicated** (annotation rows + search docs) | **{f['duplicated']}** |",
        f"| verifier | {'ALL RECORDS VERIFIED' if f['verified'] else 'FAILED: ' + '; '.join(f['problems'])} |",
        f"| `assets.annotated`: assets with exactly one distinct event | {a.get('assets_with_one_distinct_event')} "
        f"of {f['assets']} (none: {a.get('assets_without_event')}, several: "
        f"{a.get('assets_with_several_distinct_events')}) |",
        f"| `assets.annotated`: events on the topic / distinct | {a.get('events_on_topic')} / "
        f"{a.get('distinct_events')} (re-emissions byte-identical {a.get('re_emissions_byte_identical')}, "
        f"differing {a.get('re_emissions_differing')}) |",
        f"| webhooks: distinct events delivered / never delivered | {w.get('distinct_events_delivered')} / "
        f"{w.get('events_never_delivered')} ({w.get('deliveries')} deliveries, {w.get('repeat_deliveries')} repeats "
        f"with the same id, {w.get('bad_signatures')} bad signatures) |",
        f"| workers degraded at the end | {f['degraded_at_end'] or 'none'} |",
        "", "Time to recover (kill -> the component runs again under a new PID and its own progress counter moves;",
        "the supervisor: kill -> a new `argus serve` has every worker running and /healthz answers):", "",
        "| component | median | max |", "|---|---|---|",
        *[f"| {c} | {r['median']} s | {r['max']} s |" for c, r in f["recovery_s"].items()],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=300)
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of chaos (uploads spread over it)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--gap", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"))
    ap.add_argument("--drain-timeout", type=float, default=1200.0)
    ap.add_argument("--components", nargs="+", help="kill only these (worker names, 'supervisor'); default: all")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    ap.add_argument("--doc", type=Path, help="write the figures as a markdown table here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="argus-serve-chaos-") as tmp:
        settings = settings_for_tests(Path(tmp))
        settings.webhooks.allow_networks = ["127.0.0.0/8"]  # the receiver runs here
        settings.webhooks.backoff_initial_s = 1.0
        settings.kafka.session_timeout_ms = 6000
        print(f"serve chaos: {args.assets} assets over {args.duration:.0f}s, seed {args.seed}, state {tmp}")
        run = ServeChaos(settings, make_assets(args.assets, args.seed), args.duration, args.seed,
                         components=args.components, gap_s=tuple(args.gap), drain_timeout_s=args.drain_timeout)  # type: ignore[arg-type]
        report = run.run()
    figures = report.figures()
    print(json.dumps(figures, indent=2, default=str))
    command = (f"python -m benchmarks.serve_chaos --assets {args.assets} --duration {args.duration:.0f} "
               f"--seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if args.doc:
        machine = f"{os.uname().machine}, {os.cpu_count()} cores"
        args.doc.write_text(render_markdown(report, command, machine))
    a, w = figures["annotated"], figures["webhooks"]
    ok = (figures["verified"] and a.get("assets_with_one_distinct_event") == figures["assets"]
          and not a.get("re_emissions_differing") and not w.get("events_never_delivered")
          and not figures["not_recovered"])
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
