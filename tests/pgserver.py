"""A throw-away PostgreSQL server on loopback for the tests (``postgres_server`` fixture).

``initdb`` into a temporary folder, ``pg_ctl start`` on a free 127.0.0.1 port with its unix
socket in that folder, trust authentication, fsync off; stopped and deleted after the session.
PostgreSQL refuses to run as root, so as root the server runs as ``nobody`` (via ``setpriv`` or
``runuser``) in a folder that user owns. The binaries are looked up on PATH and under
``/usr/lib/postgresql/*/bin`` (Debian's place); ``make system-deps`` installs them. Without
them the tests that need a server are skipped with that reason, unless
``DLWORKSHOP_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_USER = "nobody"
BINARIES = ("initdb", "pg_ctl", "postgres")


def find_bindir() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (newest version), or None."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).parent] if on_path else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=_version, reverse=True)]
    for folder in candidates:
        if all((folder / name).is_file() for name in BINARIES):
            return folder
    return None


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.name
    return tuple(int(x) for x in part.split(".") if x.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> list[str]:
    """Command prefix that drops root to SERVER_USER (nothing when not root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={_gid()}", "--clear-groups", "--"]
    if shutil.which("runuser"):
        return ["runuser", "-u", SERVER_USER, "--"]
    raise RuntimeError("running as root, and neither setpriv nor runuser is available")


def _gid() -> int:
    return pwd.getpwnam(SERVER_USER).pw_gid


@dataclass
class PostgresServer:
    """A running server: make databases with :meth:`create_database`."""

    bindir: Path
    folder: Path
    port: int
    user: str = "postgres"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (a copy of database ``template`` when given: PostgreSQL's
        CREATE DATABASE ... TEMPLATE) and return its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                copy = f' TEMPLATE "{template}"' if template else ""
                cur.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            conn.close()
        return self.url(name)

    def _run(self, *args: str) -> None:
        cmd = [*_as_server_user(), str(self.bindir / args[0]), *args[1:]]
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -F "
            "-c full_page_writes=off -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


def start_server() -> PostgresServer:
    """Start a fresh server in a new temporary folder (owned by SERVER_USER when root)."""
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) are not on PATH nor under "
            "/usr/lib/postgresql/*/bin; install them with `make system-deps`"
        )
        if os.environ.get("DLWORKSHOP_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="dlworkshop-pg-"))
    if os.geteuid() == 0:
        os.chown(folder, pwd.getpwnam(SERVER_USER).pw_uid, _gid())
    server = PostgresServer(bindir, folder, _free_port())
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for this test session (see the module docstring)."""
    server = start_server()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.folder, ignore_errors=True)
