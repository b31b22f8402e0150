"""Chaos suite: ingest K assets while kill -9 hits every component at random moments, repeatedly.

    .venv/bin/python -m benchmarks.chaos --assets 300 --duration 600 [--seed 7] [--doc docs/reliability.md]

Anchors: Kafka's TransactionsTest (hard bounces of brokers and clients; 0 duplicates, output set ==
input set) and Kafka Streams' EOS test (repeated kill -9, then a verifier reads back every record).

While a background thread uploads the K assets spread over the ``duration`` seconds (retrying an upload
refused because PostgreSQL is down, as a client would), the chaos loop repeatedly picks a component
from a shuffled cycle (so every one is hit, again and again), SIGKILLs it by PID, leaves it down for a
random time, restarts it (argus.workers.Supervisor for workers, EmbeddedStack services for servers)
and measures the time to recover: from the restart until the pipeline finishes one more asset.
Workers that die on their own are restarted too and counted as unplanned exits (0 expected).
Afterwards argus.verify checks every asset, row, search document and offset.

Without --state-dir the run starts a private embedded stack (temp dir, free ports); the fast CI part
(tests/test_chaos.py) calls ``ChaosRun`` on the test session's stack instead.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argus import pipeline
from argus.stack.manager import EmbeddedStack
from argus.verify import Verdict, wait_until_consistent
from argus.workers import Supervisor, default_workers
from core import db
from core.settings import Settings
from models.registry import enabled_models
from producers.ingest import Ingestor, Metadata

SERVERS = ("triton", "postgres", "tansu")


@dataclass
class Episode:
    component: str
    killed_at: float  # seconds since the start of the run
    down_s: float
    restart_s: float = 0.0  # restart command -> healthy (servers) / spawned (workers)
    recover_s: float | None = None  # restart -> the pipeline finished one more asset (None: idle or timeout)


@dataclass
class ChaosReport:
    assets: int
    duration_s: float
    seed: int
    episodes: list[Episode] = field(default_factory=list)
    unplanned_exits: Counter[str] = field(default_factory=Counter)
    ingest_retries: int = 0
    ingest_s: float = 0.0
    drain_s: float = 0.0
    verdict: Verdict | None = None

    def kills(self) -> dict[str, int]:
        return dict(Counter(e.component for e in self.episodes))

    def recovery(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for comp in sorted({e.component for e in self.episodes}):
            xs = [e.recover_s for e in self.episodes if e.component == comp and e.recover_s is not None]
            if xs:
                out[comp] = {"median_s": round(statistics.median(xs), 1), "max_s": round(max(xs), 1), "n": len(xs)}
        return out

    def figures(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "assets": self.assets, "duration_s": round(self.duration_s, 1), "seed": self.seed,
            "kills": self.kills(), "kills_total": len(self.episodes),
            "unplanned_exits": dict(self.unplanned_exits), "ingest_retries": self.ingest_retries,
            "missing": v.missing if v else None, "duplicated": v.duplicated if v else None,
            "verified": v.ok if v else False, "problems": v.problems if v else ["not verified"],
            "redelivered_records": v.redelivered if v else {}, "records": v.records if v else {},
            "recovery": self.recovery(), "drain_s": round(self.drain_s, 1),
        }


def make_assets(n: int, seed: int) -> list[tuple[str, bytes]]:
    """n distinct real-photo JPEGs (crops of the sample photos shipped in packages)."""
    from benchmarks.pipeline import make_images

    with tempfile.TemporaryDirectory() as tmp:
        images = make_images(n, Path(tmp))
    return [(f"chaos-{seed}-{i:05d}.jpg", data) for i, data in enumerate(images)]


def progress_signal(settings: Settings, comp: str) -> int | None:
    """A counter that grows only while ``comp`` does its job (None while PostgreSQL is down)."""
    try:
        with db.connect(settings) as conn:
            if comp.startswith("processor-"):  # rows of that model reaching the system of record
                return int(db.scalar(conn, "SELECT count(*) FROM annotations WHERE model=%s",
                                     (comp.removeprefix("processor-"),)))
            if comp.startswith("sink-"):  # records that sink committed
                return int(db.scalar(conn, "SELECT coalesce(sum(next_offset), 0) FROM sink_offsets "
                                           "WHERE sink=%s", (comp.removeprefix("sink-"),)))
            if comp == "relay":
                return int(db.scalar(conn, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"))
            return int(db.scalar(conn, "SELECT count(*) FROM annotations"))  # servers: everything
    except Exception:  # noqa: BLE001 - PostgreSQL down
        return None


class ChaosRun:
    def __init__(self, settings: Settings, stack: EmbeddedStack, assets: list[tuple[str, bytes]],
                 duration_s: float, seed: int = 1, components: list[str] | None = None,
                 down_s: tuple[float, float] = (0.2, 3.0), gap_s: tuple[float, float] = (1.0, 5.0),
                 recover_timeout_s: float = 120.0, drain_timeout_s: float = 600.0,
                 log: Any = print) -> None:
        self.settings = settings
        self.stack = stack
        self.assets = assets
        self.duration_s = duration_s
        self.rng = random.Random(seed)
        self.sup = Supervisor(settings, default_workers(settings))
        workers = list(self.sup.workers)
        self.components = components or [*workers, *SERVERS]
        self.down_s, self.gap_s = down_s, gap_s
        self.recover_timeout_s = recover_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.report = ChaosReport(assets=len(assets), duration_s=duration_s, seed=seed)
        self.ids: list[str] = []
        self._ids_lock = threading.Lock()
        self._planned_down: set[str] = set()
        self._ingest_done = threading.Event()
        self.log = log
        self.t0 = 0.0

    # -- ingest ---------------------------------------------------------------------------------
    def _ingest(self) -> None:
        ing = Ingestor(self.settings)
        pace = self.duration_s / max(1, len(self.assets))  # uploads arrive during the whole run
        start = time.monotonic()
        for i, (name, data) in enumerate(self.assets):
            delay = start + i * pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            while True:  # a client retries an upload refused while PostgreSQL/S3 is down
                try:
                    r = ing.ingest_bytes(data, Metadata(filename=name, source="chaos"))
                    break
                except Exception:  # noqa: BLE001
                    self.report.ingest_retries += 1
                    time.sleep(0.5)
            with self._ids_lock:
                self.ids.append(r.asset_id)
        self.report.ingest_s = time.monotonic() - start
        self._ingest_done.set()

    # -- progress + healing -----------------------------------------------------------------------
    def _finished(self) -> int | None:
        with self._ids_lock:
            ids = list(self.ids)
        try:
            return pipeline.progress(self.settings, ids, enabled_models(self.settings)[0]).finished
        except Exception:  # noqa: BLE001 - PostgreSQL down
            return None

    def _heal(self) -> None:
        """Restart workers that died on their own (not a planned kill): each is a finding."""
        for name in self.sup.dead():
            if name not in self._planned_down:
                self.report.unplanned_exits[name] += 1
                self.log(f"  ! {name} exited on its own (code {self.sup.workers[name].proc.returncode}); restarting")  # type: ignore[union-attr]
                self.sup.restart(name)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._heal()
            time.sleep(min(0.25, max(0.0, end - time.monotonic())))

    # -- one fault --------------------------------------------------------------------------------
    def _kill(self, comp: str) -> None:
        if comp in SERVERS:
            self.stack.service(comp).kill()
        else:
            self.sup.kill(comp)

    def _restart(self, comp: str) -> None:
        if comp in SERVERS:
            svc = self.stack.service(comp)
            svc.start()
            svc.wait_healthy(180)
        else:
            self.sup.restart(comp)

    def _episode(self, comp: str) -> Episode:
        ep = Episode(comp, round(time.monotonic() - self.t0, 1), round(self.rng.uniform(*self.down_s), 2))
        self._planned_down.add(comp)
        self._kill(comp)
        self._sleep(ep.down_s)
        t = time.monotonic()
        self._restart(comp)
        ep.restart_s = round(time.monotonic() - t, 2)
        self._planned_down.discard(comp)
        # recovered = the restarted component's own progress counter moved (see progress_signal)
        deadline = t + self.recover_timeout_s
        before = progress_signal(self.settings, comp)
        while before is None and time.monotonic() < deadline:
            time.sleep(0.2)
            before = progress_signal(self.settings, comp)
        while time.monotonic() < deadline:
            now = progress_signal(self.settings, comp)
            if now is not None and before is not None and now > before:
                ep.recover_s = round(time.monotonic() - t, 2)
                break
            finished = self._finished()
            with self._ids_lock:
                pending = len(self.ids) - (finished or 0)
            if finished is not None and pending == 0 and self._ingest_done.is_set():
                break  # idle: nothing left to make progress on
            self._heal()
            time.sleep(0.2)
        self.log(f"  t={ep.killed_at:6.1f}s kill -9 {comp:<28} down {ep.down_s:4.1f}s, restart {ep.restart_s:5.1f}s, "
                 f"recovered in {ep.recover_s if ep.recover_s is not None else '-'}s")
        return ep

    def run(self) -> ChaosReport:
        self.t0 = time.monotonic()
        self.sup.start()
        ingest = threading.Thread(target=self._ingest, name="chaos-ingest", daemon=True)
        ingest.start()
        try:
            cycle: list[str] = []
            hit: set[str] = set()
            # keep going until the time is up AND every component was killed at least once
            while time.monotonic() - self.t0 < self.duration_s or hit != set(self.components):
                if not cycle:
                    cycle = self.rng.sample(self.components, len(self.components))
                comp = cycle.pop()
                self.report.episodes.append(self._episode(comp))
                hit.add(comp)
                self._sleep(self.rng.uniform(*self.gap_s))
            ingest.join()
            self.log(f"  chaos over after {time.monotonic() - self.t0:.0f}s; draining and verifying")
            for name in SERVERS:  # everything up for the verification
                svc = self.stack.service(name)
                if not svc.is_running():
                    svc.start()
                    svc.wait_healthy(180)
            self._heal()
            verdict, self.report.drain_s = wait_until_consistent(self.settings, self.ids, self.drain_timeout_s)
            self.report.verdict = verdict
            self.report.duration_s = time.monotonic() - self.t0
        finally:
            self.sup.stop()
            for name in SERVERS:  # leave the stack as we found it, even after a failure
                svc = self.stack.service(name)
                if not svc.is_running():
                    svc.start()
                    svc.wait_healthy(180)
        return self.report


def render_markdown(report: ChaosReport, command: str) -> str:
    f = report.figures()
    lines = [
        f"Command: `{command}`", "",
        "| figure | value |", "|---|---|",
        f"| assets ingested (K) | {f['assets']} |",
        f"| wall time (chaos + drain) | {f['duration_s']} s |",
        f"| kills (kill -9), total | {f['kills_total']} |",
        *[f"| kills: {c} | {n} |" for c, n in sorted(f["kills"].items())],
        f"| unplanned worker exits | {sum(f['unplanned_exits'].values())} {f['unplanned_exits'] or ''} |",
        f"| uploads retried by the client (PostgreSQL down) | {f['ingest_retries']} |",
        f"| **missing** (annotation rows + search docs) | **{f['missing']}** |",
        f"| **duplicated** (annotation rows + search docs) | **{f['duplicated']}** |",
        f"| records re-sent upstream (at-least-once, deduplicated downstream) | {f['redelivered_records']} |",
        f"| verifier | {'ALL RECORDS VERIFIED' if f['verified'] else 'FAILED: ' + '; '.join(f['problems'])} |",
        f"| drain after the last fault (until verified) | {f['drain_s']} s |",
        "", "Time to recover (restart -> the component's own progress counter moves again: a processor's",
        "annotation rows, a sink's committed offsets, the relay's published rows, all annotations for a server):", "",
        "| component | median | max | episodes measured |", "|---|---|---|---|",
        *[f"| {c} | {r['median_s']} s | {r['max_s']} s | {r['n']} |" for c, r in f["recovery"].items()],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=200)
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of chaos (uploads spread over it)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--down", type=float, nargs=2, default=(0.2, 5.0), metavar=("MIN", "MAX"))
    ap.add_argument("--gap", type=float, nargs=2, default=(2.0, 10.0), metavar=("MIN", "MAX"))
    ap.add_argument("--drain-timeout", type=float, default=1200.0, help="seconds to wait for the verifier")
    ap.add_argument("--json", type=Path, help="write the figures as JSON here")
    ap.add_argument("--doc", type=Path, help="write the figures as a markdown table here")
    args = ap.parse_args()

    from argus.stack.manager import running_stack
    from argus.stack.ports import settings_for_tests
    from core import kafka

    with tempfile.TemporaryDirectory(prefix="argus-chaos-") as tmp:
        settings = settings_for_tests(Path(tmp))
        settings.processor.retry_max_wait_s = 2.0
        settings.kafka.session_timeout_ms = 3000
        with running_stack(settings) as stack:
            db.migrate(settings)
            kafka.ensure_topics(settings, kafka.all_topics(settings, enabled_models(settings)))
            print(f"chaos: {args.assets} assets over {args.duration:.0f}s, seed {args.seed}")
            run = ChaosRun(settings, stack, make_assets(args.assets, args.seed), args.duration, seed=args.seed,
                           down_s=tuple(args.down), gap_s=tuple(args.gap),  # type: ignore[arg-type]
                           drain_timeout_s=args.drain_timeout)
            report = run.run()
    figures = report.figures()
    print(json.dumps(figures, indent=2, default=str))
    command = (f"python -m benchmarks.chaos --assets {args.assets} --duration {args.duration:.0f} "
               f"--seed {args.seed}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if args.doc:
        args.doc.write_text(render_markdown(report, command))
    raise SystemExit(0 if figures["verified"] else 1)


if __name__ == "__main__":
    main()
