"""The state file of ``argus serve``: which workers run, their PIDs, restarts and why one is degraded.

The supervisor (argus/service.py) rewrites ``<state_dir>/service/state.json`` atomically whenever a worker
changes state and at least every few seconds (its heartbeat); ``argus status``, the API's ``/readyz`` and
``/metrics`` read it. A file rather than a table: it is readable while PostgreSQL is down (a crash loop is
often *caused* by a dependency), and a single-host service is exactly one supervisor and one file. The
scale-out form (compose) has no supervisor and therefore no file: readers then report nothing.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from core.settings import Settings

WorkerStateName = Literal["starting", "running", "backoff", "degraded", "stopping", "stopped"]


class WorkerState(BaseModel):
    name: str
    argv: list[str]
    model: str | None = Field(None, description="the annotation model a processor runs")
    state: WorkerStateName = "starting"
    pid: int | None = None
    restarts: int = 0
    started_at: datetime | None = None
    last_exit_code: int | None = None
    last_exit_at: datetime | None = None
    next_start_at: datetime | None = None
    reason: str | None = Field(None, description="why it is in backoff or degraded")


class ServiceState(BaseModel):
    supervisor_pid: int
    supervisor_cmdline: list[str] = Field(default_factory=list, description="checked against /proc (PID reuse)")
    started_at: datetime
    heartbeat_at: datetime
    state: Literal["starting", "running", "draining", "stopped"] = "starting"
    workers: dict[str, WorkerState] = Field(default_factory=dict)

    def degraded(self) -> dict[str, str]:
        return {n: w.reason or "degraded" for n, w in self.workers.items() if w.state == "degraded"}

    def degraded_models(self) -> dict[str, str]:
        return {w.model: w.reason or "degraded" for w in self.workers.values()
                if w.state == "degraded" and w.model}


def state_path(settings: Settings) -> Path:
    return settings.abs_state_dir / "service" / "state.json"


def write_state(settings: Settings, state: ServiceState) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)  # atomic: a reader never sees half a file


def read_state(settings: Settings) -> ServiceState | None:
    try:
        return ServiceState.model_validate_json(state_path(settings).read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def live_state(settings: Settings) -> ServiceState | None:
    """The state file when its supervisor is alive (a PID check against /proc), else None."""
    st = read_state(settings)
    if st is None or not pid_alive(st.supervisor_pid):
        return None
    if cmdline(st.supervisor_pid) != st.supervisor_cmdline:
        return None  # the PID was recycled by another program
    return st


def heartbeat_age(state: ServiceState) -> float:
    return time.time() - state.heartbeat_at.timestamp()
