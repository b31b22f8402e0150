"""The embedded stack as a whole: ``argus up`` / ``argus down`` / ``argus status``."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console

from argus.stack.base import Service, ServiceStatus
from argus.stack.postgres import PostgresService
from argus.stack.seaweedfs import SeaweedFSService
from argus.stack.tansu import TansuService
from argus.stack.triton import TritonService
from core.settings import Settings

# start order; `down` goes in reverse (tansu writes to seaweedfs, so it stops first)
SERVICE_CLASSES: tuple[type[Service], ...] = (SeaweedFSService, TansuService, PostgresService, TritonService)
SERVICE_NAMES: tuple[str, ...] = tuple(cls.name for cls in SERVICE_CLASSES)


class EmbeddedStack:
    """Real servers as detached subprocesses under ``settings.state_dir``; every call is idempotent."""

    def __init__(self, settings: Settings, console: Console | None = None) -> None:
        self.settings = settings
        self.console = console or Console()
        self._services: dict[str, Service] = {cls.name: cls(settings) for cls in SERVICE_CLASSES}

    def service(self, name: str) -> Service:
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; known: {', '.join(SERVICE_NAMES)}") from None

    def _selected(self, services: Sequence[str] | None) -> list[Service]:
        wanted = set(SERVICE_NAMES if services is None else services)
        unknown = wanted - set(SERVICE_NAMES)
        if unknown:
            raise KeyError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(SERVICE_NAMES)}")
        if "tansu" in wanted and self.settings.kafka.storage == "s3":
            wanted.add("seaweedfs")  # the durable broker keeps its log in the S3 bucket
        return [self._services[name] for name in SERVICE_NAMES if name in wanted]

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # two concurrent `argus up` on one state dir would both see "not running" and race for ports
        path = self.settings.abs_state_dir / "stack.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def up(self, services: Sequence[str] | None = None) -> None:
        """Start (in dependency order) whatever is not already running and healthy."""
        with self._lock():
            for svc in self._selected(services):
                self._up_one(svc)

    def _up_one(self, svc: Service) -> None:
        if svc.is_running():
            if not svc.healthy():
                svc.wait_healthy()  # probably still starting (another `up`); fail loudly if not
            else:
                svc.after_healthy()  # idempotent provisioning (buckets, database, extension)
            self.console.print(
                f"[cyan]=[/] {svc.name:<10} {svc.endpoint:<44} already running (pid {svc.pid()})",
                soft_wrap=True,
            )
            return
        t0 = time.monotonic()
        pid = svc.start()
        svc.wait_healthy()
        elapsed = time.monotonic() - t0
        self.console.print(
            f"[green]✓[/] {svc.name:<10} {svc.endpoint:<44} started in {elapsed:4.1f}s (pid {pid})",
            soft_wrap=True,
        )

    def down(self, services: Sequence[str] | None = None) -> None:
        """Stop running services in reverse order, by PID. Data stays in the state dir."""
        with self._lock():
            names = SERVICE_NAMES if services is None else services
            for name in reversed(SERVICE_NAMES):
                if name not in names:
                    continue
                svc = self._services[name]
                pid = svc.pid()
                if pid is None:
                    continue
                t0 = time.monotonic()
                svc.stop()
                self.console.print(
                    f"[yellow]■[/] {svc.name:<10} stopped in {time.monotonic() - t0:4.1f}s (pid {pid})",
                    soft_wrap=True,
                )

    def restart(self, name: str) -> None:
        svc = self.service(name)
        with self._lock():
            svc.stop()
            self._up_one(svc)

    def status(self) -> list[ServiceStatus]:
        return [svc.status() for svc in self._services.values()]


@contextmanager
def running_stack(settings: Settings, console: Console | None = None) -> Iterator[EmbeddedStack]:
    """Model artifacts pulled, every server up for the block, everything stopped after it (tests, benchmarks)."""
    from models.store import pull_all  # lazy: the store imports every model class (slower `argus status`)

    pull_all(settings)
    stack = EmbeddedStack(settings, console=console)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()
