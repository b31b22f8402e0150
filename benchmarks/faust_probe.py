"""Can faust-streaming build the per-asset aggregate on the embedded broker (tansu)? Measured, one command:

    .venv/bin/python -m benchmarks.faust_probe [--assets 1500] [--models 4] [--kills 3] [--storage memory|s3]

Starts a private embedded broker (tansu 0.6.0, ``argus.stack``; ``--storage s3`` adds its SeaweedFS as in the real
stack) and, against it, a small faust app in its own process (so that it can be killed -9): an agent consuming a
keyed input topic (assets x models annotation outcomes, asset id as key, shuffled within a window so that assets
complete throughout the stream), a ``Table`` keyed by asset id with its changelog topic (in-memory store: it is
rebuilt from the changelog at every start), and an output topic that gets one event per asset once all its models
arrived, with a deterministic ``event_id`` (sha256 of the canonical record), so a re-emission is byte-identical.

Scenarios (each on fresh topics and a fresh app id):
  1. ``at_least_once``: startup (process start -> first output), throughput (input events/s, first to last output),
     outputs = assets?
  2. ``at_least_once`` with ``--kills`` kill -9 of the faust worker mid-stream, each restarted at once: time to the
     first output after each restart (includes the table's changelog recovery), assets missing, byte-identical
     duplicates, differing duplicates;
  3. ``exactly_once`` (transactions): does it start, does anything come out.
Prints one table; the figures live in docs/interfaces.md ("The per-asset aggregate").

faust-streaming is not a dependency (it pins click<8.4; huggingface-hub 2.4.0, pulled by faster-whisper and
tokenizers, needs click>=8.4.2): install it beside the project without touching click, then run the probe::

    .venv/bin/pip install --no-deps faust-streaming==0.15.3 mode-streaming==0.7.1 aiokafka==0.14.0 \\
        aiohttp-cors==0.8.1 croniter==5.0.1 intervaltree==3.2.1 terminaltables==3.1.10 venusian==3.1.0 \\
        colorlog==6.12.0 pytz async-timeout mypy_extensions
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL = ("faust-streaming is not installed (it is not a dependency: it pins click<8.4, the project's "
           "huggingface-hub 2.4.0 needs click>=8.4.2). Install it without touching click:\n"
           "  .venv/bin/pip install --no-deps faust-streaming==0.15.3 mode-streaming==0.7.1 aiokafka==0.14.0 "
           "aiohttp-cors==0.8.1 croniter==5.0.1 intervaltree==3.2.1 terminaltables==3.1.10 venusian==3.1.0 "
           "colorlog==6.12.0 pytz async-timeout mypy_extensions")
PARTITIONS = 4


def event_id(record: dict[str, Any]) -> str:
    return "asa-" + hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


# ------------------------------------------------------------------------------------------ the faust worker
def worker_main(args: argparse.Namespace) -> None:
    """The faust app (runs in its own process: ``python -m benchmarks.faust_probe worker ...``)."""
    import faust  # lazy: optional, only in the worker process

    app = faust.App(args.app_id, broker=f"kafka://{args.broker}", store="memory://",
                    processing_guarantee=args.guarantee, topic_partitions=PARTITIONS, topic_replication_factor=1,
                    datadir=args.datadir, web_enabled=False, consumer_auto_offset_reset="earliest",
                    broker_commit_every=500, broker_commit_interval=1.0,
                    # tansu answers JoinGroup after session.timeout/2 (docs/embedded-stack.md): 6 s as Argus uses,
                    # not faust's default 60 s (which makes every start wait 30 s)
                    broker_session_timeout=args.session_timeout, broker_heartbeat_interval=1.0)
    src = app.topic(args.input, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
    out = app.topic(args.output, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
    table = app.Table("asset_state", default=None, partitions=PARTITIONS)
    seen = {"n": 0}
    progress = Path(args.progress)

    @app.agent(src)
    async def aggregate(stream: Any) -> None:
        async for key, value in stream.items():
            ev = json.loads(value)
            asset = ev["asset_id"]
            st = dict(table.get(asset) or {"models": {}, "emitted": None})
            models = dict(st["models"])
            models[ev["model"]] = ev["annotation_id"]
            st["models"] = models
            if len(models) == args.models and st["emitted"] is None:
                record = {"asset_id": asset, "models": dict(sorted(models.items()))}
                body = {"event_id": event_id(record), **record}
                await out.send(key=key, value=json.dumps(body, sort_keys=True).encode())
                st["emitted"] = body["event_id"]
            table[asset] = st
            seen["n"] += 1
            if seen["n"] == 1:
                progress.write_text(f"first {time.time()}\n")

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


# ------------------------------------------------------------------------------------------ the driver
@dataclass
class Outcome:
    name: str
    startup_s: float | None = None
    throughput: float | None = None
    assets: int = 0
    events_out: int = 0
    distinct: int = 0
    missing: int = 0
    identical_dups: int = 0
    differing_dups: int = 0
    incomplete: int = 0
    recovery_s: list[float] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0


class Probe:
    def __init__(self, bootstrap: str, workdir: Path, assets: int, models: int, rate: float) -> None:
        from confluent_kafka.admin import AdminClient  # lazy: benchmarks import lightly

        self.bootstrap, self.workdir, self.n, self.m, self.rate = bootstrap, workdir, assets, models, rate
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def topics(self, prefix: str) -> tuple[str, str]:
        from confluent_kafka.admin import NewTopic

        names = (f"{prefix}.in", f"{prefix}.out")
        fs = self.admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
        for f in fs.values():
            f.result(30)
        return names

    def produce(self, topic: str, rate: float = 0.0) -> int:
        """Every assets x models outcome into ``topic``; ``rate`` > 0: paced at that many events/s."""
        from confluent_kafka import Producer

        rng = random.Random(16)
        events = [(f"asset-{i:06d}", f"model_{j}") for i in range(self.n) for j in range(self.m)]
        window = 50 * self.m  # shuffled within a window: assets complete all along the stream
        order = [e for k in range(0, len(events), window) for e in rng.sample(events[k:k + window],
                                                                             len(events[k:k + window]))]
        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        t0 = time.monotonic()
        for k, (asset, model) in enumerate(order):
            if rate > 0 and k % 20 == 0:
                time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
            ann = hashlib.sha256(f"{asset}/{model}/1".encode()).hexdigest()[:32]
            p.produce(topic, key=asset.encode(),
                      value=json.dumps({"asset_id": asset, "model": model, "annotation_id": ann}).encode())
            p.poll(0)
        assert p.flush(60) == 0, "input not acknowledged"
        return len(order)

    def spawn(self, app_id: str, guarantee: str, topics: tuple[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        progress = self.workdir / f"{app_id}.{time.monotonic_ns()}.progress"
        log = open(self.workdir / f"{app_id}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.faust_probe", "worker", "--broker", self.bootstrap, "--app-id", app_id,
             "--guarantee", guarantee, "--input", topics[0], "--output", topics[1], "--models", str(self.m),
             "--datadir", str(self.workdir / app_id), "--progress", str(progress)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return proc, progress

    def reader(self, topic: str) -> Any:
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"probe-reader-{time.monotonic_ns()}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        return c

    @staticmethod
    def drain(consumer: Any, into: list[tuple[float, bytes]], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                into.append((time.monotonic(), msg.value()))

    def judge(self, o: Outcome, got: list[tuple[float, bytes]]) -> None:
        by_asset: dict[str, set[bytes]] = {}
        ids: dict[str, bytes] = {}
        for _, v in got:
            body = json.loads(v)
            by_asset.setdefault(body["asset_id"], set()).add(v)
            if body["event_id"] in ids:
                o.identical_dups += ids[body["event_id"]] == v
            ids[body["event_id"]] = v
            o.incomplete += len(body["models"]) != self.m
        o.events_out, o.distinct, o.assets = len(got), len(ids), len(by_asset)
        o.missing = self.n - len(by_asset)
        o.differing_dups = sum(len(vs) - 1 for vs in by_asset.values())

    def run(self, name: str, guarantee: str, kills: int, timeout_s: float) -> Outcome:
        o = Outcome(name)
        t_all = time.monotonic()
        prefix = f"probe{time.monotonic_ns() % 10**9}"
        topics = self.topics(prefix)
        n_in = self.n * self.m
        feeder = None
        if kills:  # input arrives while the worker runs, so that each kill lands mid-stream
            feeder = threading.Thread(target=self.produce, args=(topics[0], self.rate), daemon=True)
        else:
            self.produce(topics[0])
        got: list[tuple[float, bytes]] = []
        consumer = self.reader(topics[1])
        t0 = time.monotonic()
        proc, _ = self.spawn(f"{prefix}-agg", guarantee, topics)
        if feeder is not None:
            feeder.start()
        try:
            thresholds = [self.n * (k + 1) // (kills + 1) for k in range(kills)]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                self.drain(consumer, got, 0.2)
                if got and o.startup_s is None:
                    o.startup_s = got[0][0] - t0
                if thresholds and len({json.loads(v)["asset_id"] for _, v in got}) >= thresholds[0]:
                    thresholds.pop(0)
                    os.killpg(proc.pid, signal.SIGKILL)  # the faust worker, kill -9
                    proc.wait()
                    t_restart = time.time()
                    proc, progress = self.spawn(f"{prefix}-agg", guarantee, topics)
                    while time.monotonic() < deadline and not progress.exists():  # its first input processed
                        self.drain(consumer, got, 0.2)
                    if progress.exists():  # group join + the table's changelog recovery + first record
                        o.recovery_s.append(float(progress.read_text().split()[1]) - t_restart)
                    deadline = max(deadline, time.monotonic() + 60)
                if not thresholds and len({json.loads(v)["asset_id"] for _, v in got}) >= self.n:
                    self.drain(consumer, got, 5.0)  # late duplicates
                    break
                if proc.poll() is not None:
                    break
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            consumer.close()
        if len(got) >= 2:
            o.throughput = n_in / max(1e-9, got[-1][0] - got[0][0]) if not kills else None
        self.judge(o, got)
        if o.assets < self.n:
            o.error = last_error(self.workdir / f"{prefix}-agg.log")
        o.seconds = time.monotonic() - t_all
        return o


def last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    keys = ("Error", "error", "Exception", "failed", "Traceback")
    hits = [ln for ln in lines if any(k in ln for k in keys)]
    where = [ln for ln in lines if any(k in ln for k in ("transaction", "InitProducerId", "init_producer"))]
    text = hits[-1] if hits else (lines[-1] if lines else "")
    return (text + (f" (at: {where[-1]})" if where else ""))[:300]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.faust_probe")
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    for a in ("--broker", "--app-id", "--guarantee", "--input", "--output", "--datadir", "--progress"):
        w.add_argument(a, required=True)
    w.add_argument("--models", type=int, required=True)
    w.add_argument("--session-timeout", type=float, default=6.0)
    ap.add_argument("--assets", type=int, default=1500)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--rate", type=float, default=400.0, help="input events/s while killing")
    ap.add_argument("--storage", choices=("memory", "s3"), default="memory")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per scenario")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "worker":
        worker_main(args)
        return 0
    try:
        import faust  # noqa: F401 - only checks that the optional package is there
    except ImportError:
        print(INSTALL)
        return 2

    from argus.stack.manager import EmbeddedStack  # lazy: the driver only
    from argus.stack.ports import settings_for_tests
    from core.settings import KafkaSettings

    with tempfile.TemporaryDirectory(prefix="faust-probe-") as tmp:
        settings = settings_for_tests(Path(tmp) / "state", kafka=KafkaSettings(storage=args.storage))
        stack = EmbeddedStack(settings)
        stack.up(["tansu"])
        try:
            probe = Probe(settings.kafka_bootstrap, Path(tmp), args.assets, args.models, args.rate)
            outcomes = [probe.run("at_least_once", "at_least_once", 0, args.timeout),
                        probe.run(f"at_least_once, {args.kills} x kill -9", "at_least_once", args.kills,
                                  args.timeout),
                        probe.run("exactly_once", "exactly_once", 0, min(args.timeout, 60.0))]
        finally:
            stack.down()
    print_table(outcomes, args)
    if args.json:
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 0


def print_table(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"faust-streaming 0.15.3 on tansu ({args.storage}), {args.assets} assets x {args.models} models")
    for c in ("scenario", "startup s", "events/s", "assets out", "events out", "missing", "identical dups",
              "differing dups", "incomplete", "1st output after restart s", "error"):
        t.add_column(c)
    for o in outcomes:
        t.add_row(o.name, "-" if o.startup_s is None else f"{o.startup_s:.1f}",
                  "-" if o.throughput is None else f"{o.throughput:.0f}", str(o.assets), str(o.events_out),
                  str(o.missing), str(o.identical_dups), str(o.differing_dups), str(o.incomplete),
                  ", ".join(f"{s:.1f}" for s in o.recovery_s) or "-", o.error or "")
    Console(width=250).print(t)


if __name__ == "__main__":
    sys.exit(main())
