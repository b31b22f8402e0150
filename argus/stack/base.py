"""Common machinery for the embedded servers: start as a detached subprocess, poll health, stop by PID.

Every server is a real binary started with ``start_new_session=True`` so it outlives the ``argus``
CLI process that launched it. The PID goes to ``<state>/pids/<name>.pid`` and the output to
``<state>/logs/<name>.log``. Processes are only ever signalled by that PID, and only after
``/proc/<pid>`` proves it is still the binary we started (a recycled PID is never killed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from core.settings import Settings

LOG_TAIL_LINES = 20


class ServiceStartError(RuntimeError):
    """A server did not come up. The message names the service, its log file and the log's tail."""

    def __init__(self, service: str, reason: str, log_path: Path | None = None, log_tail: str = "") -> None:
        self.service = service
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        message = f"{service}: {reason}"
        if log_path is not None:
            message += f"\n  log: {log_path}"
        if log_tail:
            message += f"\n  last lines of the log:\n{_indent(log_tail)}"
        super().__init__(message)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    endpoint: str
    log_path: Path


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` cannot be bound. SO_REUSEADDR, like the servers, so TIME_WAIT doesn't count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def tcp_answers(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_state(pid: int) -> str | None:
    """Single-letter state from /proc/<pid>/stat (R, S, Z, ...), or None when the PID is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name in field 2 may contain spaces or ')' - the state follows the LAST ')'
    return stat.rsplit(")", 1)[1].split()[0]


class Service(ABC):
    """One embedded server process. Subclasses supply the binary, its arguments and a health check."""

    name: ClassVar[str]
    start_timeout_s: ClassVar[float] = 30.0
    stop_timeout_s: ClassVar[float] = 15.0
    # the signal that means "shut down cleanly" for this server (PostgreSQL: SIGINT = fast shutdown)
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir: Path = settings.abs_state_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the (appended) log
        self._last_health_error: str | None = None
        self._started_at: float | None = None
        self.last_start_s: float | None = None  # launch -> healthy, seconds
        self.last_stop_s: float | None = None

    # ---- to implement ------------------------------------------------------------------------
    @abstractmethod
    def binary(self) -> Path:
        """Absolute path of the executable; also what /proc/<pid>/cmdline is checked against."""

    @abstractmethod
    def args(self) -> list[str]:
        """Arguments after the binary."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """What clients connect to, for status lines."""

    @abstractmethod
    def check_health(self) -> bool:
        """One quick probe. May raise; exceptions count as unhealthy (and are kept for the error message)."""

    def ports(self) -> Mapping[str, int]:
        """Loopback ports the server binds, checked before start for a clear 'port in use' error."""
        return {}

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def popen_kwargs(self) -> dict[str, Any]:
        """Extra Popen arguments (e.g. ``user=`` for PostgreSQL when we run as root)."""
        return {}

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Create directories/config before the process starts (e.g. initdb)."""

    def after_healthy(self) -> None:  # noqa: B027 - optional hook
        """Idempotent provisioning once the server answers (buckets, databases)."""

    # ---- paths -------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "pids" / f"{self.name}.pid"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / self.name

    def command(self) -> list[str]:
        return [str(self.binary()), *self.args()]

    # ---- PID bookkeeping -----------------------------------------------------------------------
    def pid(self) -> int | None:
        """PID from the pid file when that process is alive and is still our binary, else None."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        # a child of this interpreter started by another Service object: reap it if it exited
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        state = _proc_state(pid)
        if state is None or state in ("Z", "X"):
            return False
        return self._cmdline_matches(pid)

    def _cmdline_matches(self, pid: int) -> bool:
        expected = os.path.realpath(self.binary())
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        if argv and argv[0] and os.path.realpath(os.fsdecode(argv[0])) == expected:
            return True
        # servers may rewrite their argv (process titles); the executable link still tells the truth
        try:
            exe = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return False
        return os.path.realpath(exe) == expected

    def is_running(self) -> bool:
        return self.pid() is not None

    def _write_pid(self, pid: int) -> None:
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.pid_path)  # atomic: a reader never sees a half-written PID

    def _clear_pid(self) -> None:
        self.pid_path.unlink(missing_ok=True)

    # ---- log -------------------------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Last lines written since the most recent start (the log file is appended across runs)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    def _log_note(self, text: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as fh:
            fh.write(f"[argus {datetime.now().isoformat(timespec='seconds')}] {text}\n")

    def _error(self, reason: str) -> ServiceStartError:
        return ServiceStartError(self.name, reason, self.log_path, self.log_tail())

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> int:
        """Launch the server detached from this process; returns its PID. No-op if already running."""
        running = self.pid()
        if running is not None:
            return running
        self._clear_pid()  # stale file from a crash or kill -9
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        busy = [f"{label}={port}" for label, port in self.ports().items() if port_in_use(port)]
        if busy:
            self._log_note(f"not started: port(s) already in use on 127.0.0.1: {', '.join(busy)}")
            raise self._error(f"port(s) already in use on 127.0.0.1: {', '.join(busy)}")
        try:
            self.prepare()
            cmd = self.command()
        except ServiceStartError:
            raise
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            # e.g. useradd/initdb could not run, binary missing: same error type for the CLI to show
            raise self._error(f"could not prepare the server: {exc}") from exc
        self._log_note("starting: " + " ".join(cmd))
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env(),
                    cwd=str(self.data_dir),
                    # own session: Ctrl+C in the CLI's terminal and the CLI exiting don't reach the server
                    start_new_session=True,
                    close_fds=True,
                    **self.popen_kwargs(),
                )
            except OSError as exc:
                raise self._error(f"could not execute {cmd[0]}: {exc}") from exc
        self._write_pid(self._proc.pid)
        self._started_at = time.monotonic()
        return self._proc.pid

    def wait_healthy(self, timeout: float | None = None) -> float:
        """Poll the health check until it passes; then provision (``after_healthy``).

        Returns seconds since start. Raises ServiceStartError if the process exits, or if the timeout
        passes (the half-started server is then stopped so nothing is left behind)."""
        timeout = self.start_timeout_s if timeout is None else timeout
        begin = self._started_at if self._proc is not None and self._started_at else time.monotonic()
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._clear_pid()
                raise self._error(f"process exited with code {code} before becoming healthy")
            if self._proc is None and not self.is_running():
                raise self._error("not running")
            if self._probe():
                break
            if time.monotonic() >= deadline:
                err = self._error(
                    f"not healthy after {timeout:.0f}s (last health-check error: {self._last_health_error})"
                )
                self.stop()
                raise err
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        try:
            self.after_healthy()
        except Exception as exc:
            raise self._error(f"started, but provisioning failed: {exc!r}") from exc
        self.last_start_s = time.monotonic() - begin
        return self.last_start_s

    def _probe(self) -> bool:
        try:
            ok = bool(self.check_health())
        except Exception as exc:  # noqa: BLE001 - any failure of a probe just means "not yet"
            self._last_health_error = f"{type(exc).__name__}: {exc}"
            return False
        if not ok and self._last_health_error is None:
            self._last_health_error = "health check returned False"
        return ok

    def healthy(self) -> bool:
        return self.is_running() and self._probe()

    def stop(self, timeout: float | None = None) -> bool:
        """Clean shutdown by PID: ``stop_signal``, then SIGKILL to the process group after ``timeout``.

        Returns True if a process was stopped. Only a PID whose /proc cmdline is our binary is signalled."""
        timeout = self.stop_timeout_s if timeout is None else timeout
        pid = self.pid()
        if pid is None:
            self._clear_pid()
            return False
        begin = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, self.stop_signal)
        if not self._wait_gone(pid, timeout):
            self._log_note(f"no exit {timeout:.0f}s after {self.stop_signal.name}; sending SIGKILL")
            self._killpg(pid)
            self._wait_gone(pid, 10.0)
        self._clear_pid()
        self.last_stop_s = time.monotonic() - begin
        return True

    def kill(self) -> bool:
        """SIGKILL the server and its process group (helpers such as Triton's stubs): for crash tests."""
        pid = self.pid()
        if pid is None:
            return False
        self._killpg(pid)
        self._wait_gone(pid, 10.0)
        # the pid file is left behind on purpose, as after a real crash; start() clears it
        return True

    def _killpg(self, pid: int) -> None:
        # we started it with start_new_session=True, so its process group id is its own (verified) PID
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_ours(pid):
                return True
            time.sleep(0.05)
        return not self._is_ours(pid)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        running = pid is not None
        return ServiceStatus(
            name=self.name,
            running=running,
            healthy=running and self._probe(),
            pid=pid,
            endpoint=self.endpoint,
            log_path=self.log_path,
        )


# The brief's name for the same thing.
ManagedProcess = Service
