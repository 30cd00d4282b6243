"""A throwaway PostgreSQL server for the test suite.

``PostgresServer`` runs ``initdb`` in a temporary directory and starts ``postgres`` on
127.0.0.1 at a free port; leaving the ``with`` block stops it and deletes the directory.
As root, ``initdb`` and ``pg_ctl`` refuse to run, so they run as the ``postgres`` user.
The directory lives on /dev/shm when that has room (unless TMPDIR is set), else in TMPDIR.
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        raise RuntimeError(
            "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin; "
            "run `bash scripts/ensure-postgres.sh` (as root) to install them"
        )
    return max((Path(p).parent for p in found), key=lambda p: int(p.parent.name.split(".")[0]))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scratch_dir() -> str | None:
    """/dev/shm when roomy: CREATE DATABASE there takes ~10-30 ms instead of ~200 ms on disk."""
    shm = "/dev/shm"
    if "TMPDIR" in os.environ or not os.access(shm, os.W_OK | os.X_OK):
        return None  # tempfile's default (respects TMPDIR)
    return shm if shutil.disk_usage(shm).free >= 1 << 30 else None


class PostgresServer:
    """A private PostgreSQL cluster; use as a context manager."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = 0
        self.base: Path | None = None
        self.datadir = Path()
        self.logfile = Path()
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, cwd=self.base, capture_output=True, text=True, check=False)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        if self._as_postgres:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root but there is no `postgres` user to run PostgreSQL as; "
                    "run `bash scripts/ensure-postgres.sh`"
                ) from None
        self.base = Path(tempfile.mkdtemp(prefix="pgtest-", dir=scratch_dir()))
        self.datadir = self.base / "data"
        self.logfile = self.base / "server.log"
        if self._as_postgres:
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        init = self._run(
            "initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        for _attempt in range(3):  # a "free" port can be taken before postgres binds it
            self.port = free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port}"
                f" -c unix_socket_directories={shlex.quote(str(self.datadir))}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=100"
            )
            started = self._run(
                "pg_ctl", "-w", "-t", "60", "-D", str(self.datadir),
                "-l", str(self.logfile), "-o", opts, "start",
            )  # fmt: skip
            if started.returncode == 0:
                return
            if "could not bind" not in self._log_tail():
                break
        raise RuntimeError(
            f"PostgreSQL failed to start ({started.returncode}): {started.stdout}{started.stderr}\n"
            f"--- server log (tail) ---\n{self._log_tail()}"
        )

    def stop(self) -> None:
        if self.base is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _admin(self, statement: sql.Composed) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database (named uniquely unless ``name`` is given); return its URL."""
        name = name or f"test_{uuid.uuid4().hex[:16]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
