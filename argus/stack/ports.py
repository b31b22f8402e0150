"""Free loopback ports and isolated Settings for tests (one stack per test session, no collisions)."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path
from typing import Any

from argus.stack.base import port_in_use
from argus.stack.seaweedfs import ADMIN_GRPC_OFFSET
from core.settings import Ports, Settings


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that were free on 127.0.0.1 a moment ago (all held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(n):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _admin_port(taken: set[int]) -> int:
    # weed mini also binds admin+10000 (see seaweedfs.py), so both must be free and <= 65535.
    # The admin port itself is chosen below the kernel's ephemeral range (32768+).
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 32768)
        pair = (port, port + ADMIN_GRPC_OFFSET)
        if not taken.intersection(pair) and not any(port_in_use(p) for p in pair):
            return port
    raise RuntimeError("no free port pair for SeaweedFS admin (port, port+10000)")


def settings_for_tests(state_dir: Path, **overrides: Any) -> Settings:
    """Settings for an isolated embedded stack: fresh free ports, ``state_dir``, embedded endpoints.

    ``overrides`` are Settings fields (e.g. ``kafka=KafkaSettings(storage="memory")``, ``repo_root=...``).
    Endpoint overrides inherited from ARGUS_* variables are cleared so tests never reach a real cluster.
    """
    settings = Settings(state_dir=Path(state_dir), **overrides)
    names = list(Ports.model_fields)
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    ports["seaweed_admin"] = _admin_port(set(ports.values()))
    settings.ports = Ports(**ports)
    if "kafka" not in overrides:
        settings.kafka.bootstrap = None
    if "s3" not in overrides:
        settings.s3.endpoint = None
    if "postgres" not in overrides:
        settings.postgres.dsn = None
    if "triton" not in overrides:
        settings.triton.url = None
    return settings
