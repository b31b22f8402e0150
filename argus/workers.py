"""Runs the pipeline's long-lived workers (relay, processors, sinks, API) as child processes.

Each worker is its own OS process (``argus run <kind> [name]``) so that a crash, a kill -9 or a
restart of one never takes the others down; the supervisor hands them its exact settings.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import SETTINGS_ENV, Settings
from models.registry import enabled_models, processor_instances, unavailable_models

log = logging.getLogger(__name__)


@dataclass
class Worker:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    restarts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    # what runs ``argus.cli <argv>`` under the interpreter (benchmarks.suite --profile puts pyinstrument in front)
    launcher: list[str] = field(default_factory=lambda: ["-m", "argus.cli"])


def default_workers(settings: Settings, api: bool = False) -> list[Worker]:
    ws = [Worker("relay", ["run", "relay"])]
    enabled = enabled_models(settings)
    skip = unavailable_models(settings, enabled)
    for m, why in skip.items():
        log.warning("processor %s not started: model unavailable: %s", m, why)
    for m in (m for m in enabled if m not in skip):
        ws += [Worker(f"processor-{m}" + (f"-{i}" if i else ""), ["run", "processor", m])
               for i in range(processor_instances(settings, m))]
    ws += [Worker("sink-postgres", ["run", "sink", "postgres"]), Worker("sink-search", ["run", "sink", "search"]),
           Worker("sink-lifecycle", ["run", "sink", "lifecycle"])]  # agency kill/withhold notices (docs/metadata.md)
    if "pdq" in enabled:  # the near-duplicate index (sinks/ndd_sink.py)
        ws.append(Worker("sink-ndd", ["run", "sink", "ndd"]))
    if "face_embed" in enabled:  # faces -> persons (sinks/people_sink.py, docs/people.md)
        ws.append(Worker("sink-people", ["run", "sink", "people"]))
    if api:
        ws.append(Worker("api", ["run", "api"]))
        if settings.annotate.grpc_enabled:  # on-demand annotation over gRPC (api/grpc_service.py)
            ws.append(Worker("grpc", ["run", "grpc"]))
    return ws


class Supervisor:
    def __init__(self, settings: Settings, workers: list[Worker]) -> None:
        self.settings = settings
        self.workers = {w.name: w for w in workers}
        self.log_dir = settings.abs_state_dir / "logs"

    def start(self, name: str | None = None) -> None:
        for w in self._select(name):
            if w.proc is not None and w.proc.poll() is None:
                continue
            self.log_dir.mkdir(parents=True, exist_ok=True)
            w.log_path = self.log_dir / f"{w.name}.log"
            env = {**os.environ, SETTINGS_ENV: self.settings.model_dump_json(), **w.extra_env}
            base = self.settings.observability.port
            if base > 0 and "ARGUS_OPS_PORT" not in w.extra_env:
                # one /metrics + health port per worker process: base, base+1, ... in worker order
                env["ARGUS_OPS_PORT"] = str(base + list(self.workers).index(w.name))
            with open(w.log_path, "ab") as log:
                w.proc = subprocess.Popen(
                    [sys.executable, *w.launcher, *w.argv], stdout=log, stderr=subprocess.STDOUT, env=env
                )

    def kill(self, name: str) -> None:
        """SIGKILL, by PID: the crash the exactly-once tests inflict."""
        w = self.workers[name]
        if w.proc is not None and w.proc.poll() is None:
            w.proc.send_signal(signal.SIGKILL)
            w.proc.wait()

    def restart(self, name: str) -> None:
        self.workers[name].restarts += 1
        self.start(name)

    def stop(self, name: str | None = None, timeout: float = 15.0) -> None:
        procs = [w.proc for w in self._select(name) if w.proc is not None and w.proc.poll() is None]
        for p in procs:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def dead(self) -> list[str]:
        return [w.name for w in self.workers.values() if w.proc is not None and w.proc.poll() is not None]

    def pids(self) -> dict[str, int | None]:
        return {n: (w.proc.pid if w.proc else None) for n, w in self.workers.items()}

    def _select(self, name: str | None) -> list[Worker]:
        return list(self.workers.values()) if name is None else [self.workers[name]]
