"""`argus serve`'s supervisor against real workers: a killed worker is restarted with backoff, a crash-looping one
is marked degraded (state file, /readyz, /metrics) while the rest keep working; kill -9 of the supervisor
leaves no orphans and a new supervisor starts cleanly; SIGTERM drains; one supervisor per state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from argus import pipeline
from argus.cli import app as cli_app
from argus.service import Lag, Service, worker_lag
from argus.workers import Supervisor, Worker
from core.service_state import ServiceState, WorkerState, pid_alive, read_state
from core.settings import SETTINGS_ENV, Settings
from producers.ingest import Ingestor, Metadata

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parent.parent


def wait(cond: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def service_settings(env: Settings, tmp_path: Path) -> Settings:
    s = env.model_copy(deep=True)
    s.state_dir = tmp_path / "state"  # the service's state file, lock and worker logs (the servers are the session's)
    s.models = ["pdq"]
    s.service.backoff_initial_s = 0.2
    s.service.backoff_max_s = 1.0
    s.service.crash_loop_exits = 3
    s.service.crash_loop_window_s = 60.0
    s.service.stable_after_s = 5.0
    s.service.degraded_retry_s = 0.0
    s.service.drain_timeout_s = 20.0
    return s


def test_restart_and_crash_loop_degrades_one_model(env: Settings, tmp_path: Path, sample_files: list[Path]) -> None:
    s = service_settings(env, tmp_path)
    workers = [Worker("relay", ["run", "relay"]), Worker("processor-pdq", ["run", "processor", "pdq"]),
               Worker("sink-postgres", ["run", "sink", "postgres"]),
               Worker("processor-bogus", ["run", "processor", "no_such_model"])]  # exits at once, every time
    svc = Service(s, workers)
    svc.run_in_thread()
    try:
        st = lambda: read_state(s)  # noqa: E731
        wait(lambda: (x := st()) and x.workers["processor-pdq"].state == "running", 60, "processor-pdq running")
        # the crash loop: 3 exits within the window -> degraded, not restarted, with the reason
        wait(lambda: (x := st()) and x.workers["processor-bogus"].state == "degraded", 90, "processor-bogus degraded")
        bogus = st().workers["processor-bogus"]  # type: ignore[union-attr]
        assert bogus.restarts == 2 and bogus.pid is None and bogus.last_exit_code not in (None, 0)
        assert bogus.reason and "crash loop: 3 exits" in bogus.reason, bogus.reason

        # kill -9 of a healthy worker: restarted (new PID), the others untouched
        before = st()
        assert before is not None
        old = before.workers["processor-pdq"].pid
        assert old is not None
        others = {n: before.workers[n].pid for n in ("relay", "sink-postgres")}
        os.kill(old, signal.SIGKILL)
        wait(lambda: (x := st()) and x.workers["processor-pdq"].restarts == 1
             and x.workers["processor-pdq"].pid not in (None, old), 30, "processor-pdq restarted")
        after = st()
        assert after is not None
        assert {n: after.workers[n].pid for n in others} == others
        assert after.workers["processor-bogus"].state == "degraded"  # still not restarted

        # the restarted processor works: an upload is annotated end to end
        ing = Ingestor(s)
        res = ing.ingest_bytes(sample_files[0].read_bytes(), Metadata(filename="svc.jpg"))
        wait(lambda: pipeline.progress(s, [res.asset_id], "pdq").annotated == 1, 120, "the pdq annotation")
        lag = worker_lag(s, after.workers)  # what `argus status` shows, read from PostgreSQL
        assert lag["processor-pdq"] == Lag(0, 0.0) and lag["relay"].records == 0, lag
        status = CliRunner().invoke(cli_app, ["status"], env={SETTINGS_ENV: s.model_dump_json()})
        assert "processor-bogus" in status.output and "degraded" in status.output, status.output

        # /readyz and /metrics say which model is degraded and why; the API still answers
        with TestClient(create_app(s)) as client:
            r = client.get("/readyz")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "degraded" and "crash loop" in body["degraded"]["no_such_model"]
            m = client.get("/metrics").text
            assert 'argus_worker_degraded{model="no_such_model",worker="processor-bogus"} 1.0' in m
            assert 'argus_worker_restarts{worker="processor-pdq"} 1.0' in m
    finally:
        svc.shutdown()
    final = read_state(s)
    assert final is not None and final.state == "stopped"
    pids = [p for p in svc.sup.pids().values() if p]
    assert not [p for p in pids if pid_alive(p)], "workers left running after the drain"


def _serve(s: Settings, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, SETTINGS_ENV: s.model_dump_json()}
    log = open(s.abs_state_dir / f"serve-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([sys.executable, "-m", "argus.cli", "serve", "--no-stack", "--no-api",
                             "--only", "relay", "--only", "sink-postgres", *args],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _running(s: Settings, sup_pid: int) -> ServiceState | None:
    st = read_state(s)
    if st and st.supervisor_pid == sup_pid and st.state == "running" \
            and all(w.state == "running" and w.pid for w in st.workers.values()):
        return st
    return None


def test_supervisor_kill9_leaves_no_orphans_and_restarts_clean(env: Settings, tmp_path: Path) -> None:
    s = service_settings(env, tmp_path)
    s.abs_state_dir.mkdir(parents=True)
    first = _serve(s)
    try:
        wait(lambda: _running(s, first.pid), 90, "first supervisor running")
        st1 = _running(s, first.pid)
        assert st1 is not None
        old = {n: w.pid for n, w in st1.workers.items()}

        second = _serve(s)  # one supervisor per state directory
        assert second.wait(60) == 2

        first.send_signal(signal.SIGKILL)
        first.wait()
        # PR_SET_PDEATHSIG: the kernel sends the workers SIGTERM, they drain and exit on their own
        wait(lambda: not any(p and pid_alive(p) for p in old.values()), 30, "orphaned workers to exit")

        third = _serve(s)
        try:
            wait(lambda: _running(s, third.pid), 90, "new supervisor running")
            st3 = _running(s, third.pid)
            assert st3 is not None
            assert set(st3.workers) == set(old) and not set(w.pid for w in st3.workers.values()) & set(old.values())
            new = [w.pid for w in st3.workers.values() if w.pid]
            # SIGTERM: drain, exit 0, nothing left behind
            third.send_signal(signal.SIGTERM)
            assert third.wait(60) == 0
            assert not [p for p in new if pid_alive(p)]
            final = read_state(s)
            assert final is not None and final.state == "stopped"
            assert all(w.state == "stopped" for w in final.workers.values()), json.loads(final.model_dump_json())
        finally:
            if third.poll() is None:
                third.kill()
    finally:
        if first.poll() is None:
            first.kill()


def test_lag_of_every_worker(env: Settings, tmp_path: Path, sample_files: list[Path]) -> None:
    """`argus status` / /metrics lag for every kind of worker, read from each one's system-of-record table: an upload
    while the ndd sink is stopped is owed by it (records > 0, the age grows), then 0 once it ran; the workers that
    answer requests show "-" with the reason."""
    s = service_settings(env, tmp_path)
    svc = Service(s, [Worker("relay", ["run", "relay"]), Worker("processor-pdq", ["run", "processor", "pdq"]),
                      Worker("sink-postgres", ["run", "sink", "postgres"])])
    svc.run_in_thread()
    try:
        wait(lambda: (x := read_state(s)) and all(w.state == "running" for w in x.workers.values()), 60, "running")
        res = Ingestor(s).ingest_bytes(sample_files[0].read_bytes(), Metadata(filename="lag.jpg"))
        wait(lambda: pipeline.progress(s, [res.asset_id], "pdq").annotated == 1, 120, "the pdq annotation")
        st = read_state(s)
        assert st is not None
        others = ["sink-search", "sink-ndd", "sink-people", "sink-aggregate", "sink-lifecycle", "webhooks",
                  "ftp", "api", "grpc"]
        workers = {**st.workers, **{n: WorkerState(name=n, argv=["run", n]) for n in others}}
        lag = worker_lag(s, workers)
        assert set(lag) == set(workers), lag
        for n in ("relay", "processor-pdq", "sink-postgres", "sink-people", "sink-lifecycle", "webhooks"):
            assert lag[n] == Lag(0, 0.0), (n, lag[n])
        for n in ("sink-search", "sink-ndd", "sink-aggregate"):  # not running: the upload is owed
            assert lag[n].records == 1 and (lag[n].seconds or 0) > 0, (n, lag[n])
        for n in ("ftp", "api", "grpc"):
            assert lag[n].records is None and lag[n].seconds is None and "no queue" in lag[n].source, lag[n]
        time.sleep(1.2)
        again = worker_lag(s, workers)["sink-ndd"]
        assert again.records == 1 and (again.seconds or 0) >= (lag["sink-ndd"].seconds or 0) + 1.0, again

        with TestClient(create_app(s)) as client:  # the supervised workers' lag as metrics
            m = client.get("/metrics").text
            assert 'argus_worker_lag_records{worker="sink-postgres"} 0.0' in m, m
            assert 'argus_worker_lag_seconds{worker="relay"} 0.0' in m
        status = CliRunner().invoke(cli_app, ["status"], env={SETTINGS_ENV: s.model_dump_json()})
        assert "lag:" in status.output and "outbox" in status.output, status.output  # the source column

        ndd = Supervisor(s, [Worker("sink-ndd", ["run", "sink", "ndd"])])
        ndd.start()
        try:  # the sink runs: its backlog drains to 0
            wait(lambda: worker_lag(s, workers)["sink-ndd"] == Lag(0, 0.0), 90, "the ndd sink's lag to drain")
        finally:
            ndd.stop()
    finally:
        svc.shutdown()
