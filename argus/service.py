"""``argus serve``: the embedded stack, every worker and the API as one supervised, long-lived service.

What the supervisor guarantees (docs/deployment.md, docs/reliability.md):

- **restart with capped backoff**: a worker that exits is started again after ``backoff_initial_s``, doubling per
  consecutive crash up to ``backoff_max_s``; a run of ``stable_after_s`` resets the backoff;
- **crash loops degrade, they do not spread**: ``crash_loop_exits`` exits within ``crash_loop_window_s`` mark the
  worker *degraded* (not restarted; tried once more every ``degraded_retry_s``) with the reason (exit code, last log
  line); every other worker keeps running. ``argus status``, the API's ``/readyz`` and ``/metrics``
  (``argus_worker_degraded``) say which model is degraded and why;
- **drain on SIGTERM**: workers get SIGTERM and finish their batches (processors commit, sinks commit their
  transaction) within ``drain_timeout_s``, then the embedded stack is stopped;
- **no orphans**: every worker asks the kernel for SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a
  kill -9 of the supervisor drains its workers; a new supervisor also finds the previous one's workers in the state
  file and stops any still alive after checking ``/proc/<pid>/cmdline`` and ``environ`` (a recycled PID is never
  signalled). One supervisor per state directory (``flock``; the kernel releases it on kill -9).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from argus.workers import Supervisor, Worker, default_workers
from core import db
from core.service_state import (
    ServiceState,
    WorkerState,
    cmdline,
    live_state,
    pid_alive,
    read_state,
    state_path,
    write_state,
)
from core.settings import Settings
from retrieval.worker_lag import Lag as Lag  # re-exported: `argus status` and the tests read it from here
from retrieval.worker_lag import worker_lag as worker_lag

log = logging.getLogger(__name__)

SUPERVISOR_PID_ENV = "ARGUS_SUPERVISOR_PID"
HEAD_START = ("api",)  # workers started (and given time to listen) before the rest
_PR_SET_PDEATHSIG = 1
HEARTBEAT_S = 2.0


def die_with_supervisor() -> None:
    """First thing in an ``argus run`` worker started by the service: SIGTERM when the supervisor dies."""
    raw = os.environ.get(SUPERVISOR_PID_ENV)
    if not raw or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(raw):  # it died before the prctl: nobody would tell us, so stop now
        raise SystemExit(f"supervisor {raw} is gone; not starting")


class AlreadyRunning(RuntimeError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def model_of(worker: Worker) -> str | None:
    return worker.argv[2] if worker.argv[:2] == ["run", "processor"] and len(worker.argv) > 2 else None


def _last_line(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


@dataclass
class _Track:
    exits: deque[float]
    consecutive: int = 0
    started_mono: float = 0.0
    due_mono: float | None = None  # when to start it again


class Service:
    """Supervises ``workers``; ``start()`` then ``run()`` (blocks until ``stop_event``), or ``run_in_thread()``."""

    def __init__(self, settings: Settings, workers: list[Worker], tick_s: float = 0.25) -> None:
        self.settings = settings
        self.cfg = settings.service
        self.tick_s = tick_s
        self.stop_event = threading.Event()
        for w in workers:
            w.extra_env[SUPERVISOR_PID_ENV] = str(os.getpid())
        self.sup = Supervisor(settings, workers)
        now = _now()
        self.state = ServiceState(supervisor_pid=os.getpid(), supervisor_cmdline=cmdline(os.getpid()),
                                  started_at=now, heartbeat_at=now)
        self.state.workers = {w.name: WorkerState(name=w.name, argv=w.argv, model=model_of(w)) for w in workers}
        self.track = {w.name: _Track(deque()) for w in workers}
        self._lock_file: IO[str] | None = None
        self._last_write = 0.0
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def claim(self) -> None:
        """Become the one supervisor of this state directory and stop the previous one's leftover workers."""
        if self._lock_file is None:
            self._claim()
            self._reap_previous()

    def start(self) -> None:
        self.claim()
        first = [n for n in self.sup.workers if n in HEAD_START]
        for name in first:
            self._spawn(name)
        self._head_start(first)
        for name in self.sup.workers:
            if name not in first:
                self._spawn(name)
        self.state.state = "running"
        self._write(force=True)

    def _head_start(self, names: list[str]) -> None:
        """Let the API start alone (until it listens, at most ``service.api_head_start_s``) before twenty other
        workers' imports compete for the cores: after a restart of the supervisor (kill -9, a crash, a reboot)
        clients get answers again within seconds instead of when every worker is up (benchmarks/serve_chaos.py)."""
        if not names:
            return
        deadline = time.monotonic() + self.cfg.api_head_start_s
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if any(w.proc is None or w.proc.poll() is not None for w in (self.sup.workers[n] for n in names)):
                return  # it died: the monitor loop restarts it; the others must not wait for that
            try:
                socket.create_connection(("127.0.0.1", self.settings.ports.api), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)

    def run(self) -> None:
        """The monitor loop (blocks); drains the workers when ``stop_event`` is set."""
        try:
            while not self.stop_event.wait(self.tick_s):
                self.tick()
        finally:
            self.drain()

    def run_in_thread(self) -> threading.Thread:
        """``start()`` + ``run()`` on a thread that lives as long as the workers (they die with the thread that
        forked them, PR_SET_PDEATHSIG), for the demo whose main thread ingests while the service runs."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            try:
                self.start()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            self.run()

        self._thread = threading.Thread(target=main, name="argus-service", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self._thread

    def shutdown(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join()

    def drain(self) -> None:
        if self.state.state == "stopped" or self._lock_file is None:
            return  # never claimed (another supervisor owns the state file) or already drained
        self.state.state = "draining"
        for ws in self.state.workers.values():
            if ws.state in ("running", "starting"):
                ws.state = "stopping"
        self._write(force=True)
        log.info("service: draining %d worker(s) (up to %.0fs)", len(self.sup.workers), self.cfg.drain_timeout_s)
        self.sup.stop(timeout=self.cfg.drain_timeout_s)
        for name, w in self.sup.workers.items():
            ws = self.state.workers[name]
            if w.proc is not None:
                ws.last_exit_code = w.proc.returncode
            ws.state, ws.pid = "stopped", None
        self.state.state = "stopped"
        self._write(force=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- one pass of the monitor ------------------------------------------------------------------
    def tick(self) -> None:
        mono = time.monotonic()
        changed = False
        for name, w in self.sup.workers.items():
            ws, tr = self.state.workers[name], self.track[name]
            if w.proc is not None and ws.pid == w.proc.pid and w.proc.poll() is not None:
                self._on_exit(name, w.proc.returncode, mono)
                changed = True
            elif tr.due_mono is not None and mono >= tr.due_mono:
                ws.restarts += 1
                self._spawn(name)
                changed = True
            elif ws.state == "starting" and ws.pid is not None and mono - tr.started_mono >= 1.0:
                ws.state = "running"
                changed = True
            stable = ws.pid is not None and mono - tr.started_mono >= self.cfg.stable_after_s
            if stable and ws.state in ("running", "degraded") and (tr.consecutive or ws.state == "degraded"):
                tr.consecutive = 0  # recovered: the next crash starts the backoff over
                if ws.state == "degraded":
                    log.info("service: %s recovered after a degraded period", name)
                    ws.state, ws.reason = "running", None
                changed = True
        self._write(force=changed)

    def _on_exit(self, name: str, code: int | None, mono: float) -> None:
        ws, tr, w = self.state.workers[name], self.track[name], self.sup.workers[name]
        ws.last_exit_code, ws.last_exit_at, ws.pid = code, _now(), None
        tr.exits.append(mono)
        while tr.exits and mono - tr.exits[0] > self.cfg.crash_loop_window_s:
            tr.exits.popleft()
        tr.consecutive += 1
        why = f"exit code {code}; last log line: {_last_line(w.log_path)!r}"
        if len(tr.exits) >= self.cfg.crash_loop_exits or ws.state == "degraded":
            ws.state = "degraded"
            ws.reason = (f"crash loop: {len(tr.exits)} exits within {self.cfg.crash_loop_window_s:.0f}s; {why}; "
                         f"log {w.log_path}")
            retry = self.cfg.degraded_retry_s
            tr.due_mono = mono + retry if retry > 0 else None
            ws.next_start_at = _now() + timedelta(seconds=retry) if retry > 0 else None
            log.error("service: %s degraded (%s)", name, ws.reason)
            return
        delay = min(self.cfg.backoff_initial_s * 2 ** (tr.consecutive - 1), self.cfg.backoff_max_s)
        ws.state, ws.reason = "backoff", f"restarting in {delay:.1f}s after {why}"
        tr.due_mono = mono + delay
        ws.next_start_at = _now() + timedelta(seconds=delay)
        log.warning("service: %s exited (%s); restart in %.1fs", name, why, delay)

    def _spawn(self, name: str) -> None:
        ws, tr = self.state.workers[name], self.track[name]
        self.sup.start(name)
        proc = self.sup.workers[name].proc
        assert proc is not None
        ws.pid, ws.started_at, ws.next_start_at = proc.pid, _now(), None
        if ws.state != "degraded":  # a degraded worker on its retry stays degraded until it proves stable
            ws.state = "starting"
        tr.started_mono, tr.due_mono = time.monotonic(), None
        self._write(force=True)

    # -- one supervisor per state directory; the previous one's workers --------------------------------
    def _claim(self) -> None:
        path = state_path(self.settings).with_name("lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")  # noqa: SIM115 - held open for the supervisor's life (the lock)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            prev = read_state(self.settings)
            raise AlreadyRunning(f"a supervisor already runs for {self.settings.abs_state_dir}"
                                 + (f" (pid {prev.supervisor_pid})" if prev else "")) from None
        self._lock_file = f

    def _reap_previous(self) -> None:
        """Workers of a supervisor that was killed (kill -9, power loss is moot): they got SIGTERM from the
        kernel and drain; wait for them, and stop any that is still ours after the drain timeout."""
        prev = read_state(self.settings)
        if prev is None:
            return
        mine = [ws.pid for ws in prev.workers.values()
                if ws.pid and self._is_worker_of(ws.pid, prev.supervisor_pid, ws.argv)]
        if not mine:
            return
        log.warning("service: %d worker(s) of the previous supervisor (pid %d) still run: %s; stopping them",
                    len(mine), prev.supervisor_pid, mine)
        for pid in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while time.monotonic() < deadline and any(pid_alive(p) for p in mine):
            time.sleep(0.2)
        for pid in mine:
            if pid_alive(pid) and self._is_worker_of(pid, prev.supervisor_pid, None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _is_worker_of(pid: int, supervisor_pid: int, argv: list[str] | None) -> bool:
        if not pid_alive(pid):
            return False
        cl = cmdline(pid)
        if "argus.cli" not in cl or (argv is not None and cl[-len(argv):] != argv):
            return False
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return True  # cmdline matched; environ unreadable (another user) is not expected here
        return f"{SUPERVISOR_PID_ENV}={supervisor_pid}".encode() in env

    def _write(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_write < HEARTBEAT_S:
            return
        self.state.heartbeat_at = _now()
        write_state(self.settings, self.state)
        self._last_write = time.monotonic()


# lag: each worker's backlog from its system-of-record table, retrieval/worker_lag.py (the API's /metrics reads it too)


# ------------------------------------------------------------------------------------------ entry point
def install_stop_signals(stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop())


def service_running(settings: Settings) -> ServiceState | None:
    return live_state(settings)


def service_workers(settings: Settings, api: bool = True, only: list[str] | None = None) -> list[Worker]:
    """What ``serve`` runs: the pipeline's workers, the per-asset aggregate and the API (``only``: a subset)."""
    workers = default_workers(settings, api=False)
    workers.append(Worker("sink-aggregate", ["run", "sink", "aggregate"]))
    if settings.webhooks.enabled:  # assets.annotated -> registered URLs (sinks/webhook_sink.py)
        workers.append(Worker("webhooks", ["run", "webhooks"]))
    if settings.ftp.accounts:  # camera / wire FTP ingest (producers/ftp_server.py), only when configured
        workers.append(Worker("ftp", ["run", "ftp"]))
    if api:
        workers.append(Worker("api", ["run", "api"]))
    if api and settings.annotate.grpc_enabled:  # on-demand annotation (api/grpc_service.py)
        workers.append(Worker("grpc", ["run", "grpc"]))
    if only:
        unknown = set(only) - {w.name for w in workers}
        if unknown:
            raise ValueError(f"unknown worker(s) {sorted(unknown)}; choose from {[w.name for w in workers]}")
        workers = [w for w in workers if w.name in only]
    return workers


def prepare_stack(settings: Settings, manage_stack: bool) -> None:
    """The embedded stack up (already running servers are kept), migrations, topics."""
    from argus.stack.manager import EmbeddedStack  # lazy: only when serve manages the embedded servers
    from core import kafka
    from models.registry import check_repo, enabled_models
    from models.store import pull_all

    if manage_stack:
        check_repo(settings)
        pull_all(settings)
        EmbeddedStack(settings).up()
    db.migrate(settings)
    kafka.ensure_topics(settings, [*kafka.all_topics(settings, enabled_models(settings)),
                                   settings.topic(kafka.TOPIC_ANNOTATED)])


def run_service(settings: Settings, manage_stack: bool = True, api: bool = True, only: list[str] | None = None,
                echo: Callable[[str], None] = print) -> int:
    """``argus serve``: blocks until SIGTERM/SIGINT, then drains the workers and (if it manages it) the stack."""
    from argus.stack.manager import EmbeddedStack  # lazy: only when serve manages the embedded servers

    workers = service_workers(settings, api=api, only=only)
    svc = Service(settings, workers)
    install_stop_signals(svc.stop_event.set)
    try:
        svc.claim()  # before touching anything: a second `serve` on the same state dir stops here
    except AlreadyRunning as exc:
        echo(f"argus serve: {exc}")
        return 2
    try:
        prepare_stack(settings, manage_stack)
        if svc.stop_event.is_set():
            return 0
        svc.start()
        echo(f"argus serve: supervising {', '.join(f'{n} (pid {p})' for n, p in svc.sup.pids().items())}; "
             f"state {state_path(settings)}; logs {svc.sup.log_dir}")
        if api:
            echo(f"API and web app: http://127.0.0.1:{settings.ports.api}/")
        svc.run()
        echo("argus serve: workers drained")
        return 0
    finally:
        svc.drain()
        if manage_stack:
            EmbeddedStack(settings).down()
