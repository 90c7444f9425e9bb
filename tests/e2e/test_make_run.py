"""``make run`` itself, as a user runs it: on free ports, with private servers, then SIGTERM, and
nothing may be left running. A second ``make run`` on the same folder must not harm the first;
a folder whose owner died is taken over; a busy port names the setting to change; ``make clean``
cleans the folder ``JUSTCHAT_RUN_DIR`` names."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from justchat.client import Client
from justchat.devservers import find_free_port, find_free_port_run

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180
LOW_FD_LIMIT = 1024
ADMIN, ADMIN_PASSWORD = "runadmin", "Secret-pass1"
SERVICE_MODULES = ("dashboard_service", "chat_service", "presence_service", "gateway")

T = TypeVar("T")


async def eventually(what: str, check: Callable[[], T | None], timeout_s: float) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        await asyncio.sleep(0.1)
    return result


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")


def fd_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of a live process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open files limit for pid {pid}")


@pytest.fixture(autouse=True)
def remove_clusters(tmp_path: Path) -> Iterator[None]:
    """As root, a run's PostgreSQL cluster lives outside tmp_path, behind a symlink."""
    yield
    link = tmp_path / "run" / "postgres" / "pgdata"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)


def user_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """What a user's shell gives ``make run``: free ports, a run folder, no server URLs."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    gateways = int(settings.get("JUSTCHAT_GATEWAYS", "2"))
    env.update(
        {
            "JUSTCHAT_API_PORT": str(find_free_port()),
            "JUSTCHAT_GATEWAY_PORT": str(find_free_port_run(gateways)),
            "JUSTCHAT_CHAT_PORT": str(find_free_port()),
            "JUSTCHAT_PRESENCE_PORT": str(find_free_port()),
            "JUSTCHAT_RUN_DIR": str(tmp_path / "run"),
            "PYTHON": sys.executable,
            **settings,
        }
    )
    return env


def service_ports(env: dict[str, str]) -> list[int]:
    gateway = int(env["JUSTCHAT_GATEWAY_PORT"])
    return [
        int(env["JUSTCHAT_API_PORT"]),
        int(env["JUSTCHAT_CHAT_PORT"]),
        int(env["JUSTCHAT_PRESENCE_PORT"]),
        *range(gateway, gateway + int(env.get("JUSTCHAT_GATEWAYS", "2"))),
    ]


class MakeRun:
    """``make -s run`` in a session of its own (as in a terminal), its output in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *, fd_limit: int | None = None) -> None:
        self.log_path = log_path

        # A login shell's usual soft limit, below the hard one, when fd_limit is given.
        shell = f"ulimit -S -n {fd_limit}; " if fd_limit is not None else ""
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", f"{shell}exec make -s run"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def banner(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Press Ctrl-C to stop." not in self.output:
            assert self.process.poll() is None, self.output
            assert time.monotonic() < deadline, self.output
            await asyncio.sleep(0.5)
        return self.output

    async def exit_code(self, timeout_s: float = 60) -> int:
        await eventually("make run to exit", lambda: self.process.poll() is not None, timeout_s)
        return self.process.wait()

    def family(self) -> set[int]:
        return descendants(self.process.pid) | {self.process.pid}

    def pids_running(self, module: str) -> list[int]:
        return [p for p in descendants(self.process.pid) if module in command_line(p)]

    async def stop(self) -> None:
        """Ctrl-C's effect (SIGTERM to the session); everything it started must go."""
        family = self.family()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        await eventually("every process to stop", lambda: not any(map(alive, family)), 30)
        assert "stopped" in self.output

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def serves_from(pid: int, run_dir: Path) -> bool:
    """Whether ``pid`` is a private server of ``run_dir`` (its working directory is in there)."""
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return cwd in ((run_dir / "redis").resolve(), (run_dir / "postgres" / "pgdata").resolve())


def server_pids(run_dir: Path) -> tuple[int, int]:
    """(Redis, PostgreSQL postmaster) pids from the pid files the servers write."""
    redis = int((run_dir / "redis" / "redis.pid").read_text().split()[0])
    postgres = int((run_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
    return redis, postgres


async def all_healthy(env: dict[str, str]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for port in service_ports(env):
            health = await http.get(f"http://127.0.0.1:{port}/health")
            assert health.status_code == 200, (port, health.text)
            assert health.json()["status"] == "ok"


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_make_run_serves_chat_and_stops_cleanly(tmp_path: Path) -> None:
    env = user_env(tmp_path, JUSTCHAT_SERVER_SOURCE="package")  # the fresh-machine path
    api_port, gateway_port = int(env["JUSTCHAT_API_PORT"]), int(env["JUSTCHAT_GATEWAY_PORT"])
    make = MakeRun(env, tmp_path / "make-run.log", fd_limit=LOW_FD_LIMIT)
    try:
        banner = await make.banner()
        assert f"http://127.0.0.1:{api_port}/api/v1" in banner
        assert f"Swagger UI    http://127.0.0.1:{api_port}/api/v1/docs" in banner
        assert f"ws://127.0.0.1:{gateway_port}/ws" in banner
        assert f"ws://127.0.0.1:{gateway_port + 1}/ws" in banner
        assert (
            "admin         none yet: set JUSTCHAT_ADMIN_USERNAME and JUSTCHAT_ADMIN_PASSWORD"
            " and restart" in banner
        )
        async with httpx.AsyncClient(timeout=10) as http:
            docs = await http.get(f"http://127.0.0.1:{api_port}/api/v1/docs", follow_redirects=True)
            assert docs.status_code == 200
            assert "swagger" in docs.text.lower()
            url = (await http.get(f"http://127.0.0.1:{api_port}/api/v1/gateway")).json()["url"]
        assert url in (f"ws://127.0.0.1:{gateway_port}/ws", f"ws://127.0.0.1:{gateway_port + 1}/ws")

        # Started from a shell whose soft limit is 1024, a gateway may still hold 50,000 sockets.
        for module in SERVICE_MODULES:
            [pid, *_] = make.pids_running(module)
            soft, hard = fd_limits(pid)
            assert soft == hard, (module, soft, hard)
            assert soft > LOW_FD_LIMIT, module

        a = await Client.connect(f"ws://127.0.0.1:{gateway_port}/ws")
        b = await Client.connect(f"ws://127.0.0.1:{gateway_port + 1}/ws")
        await a.join(5)
        await a.expect("channel_join")
        await b.join(5)
        await b.expect("channel_join")
        await a.send(5, "through make run")
        got = await b.expect("chat_send")
        assert got.payload.content == "through make run"
        assert got.payload.sender == a.user
        await a.close()
        await b.close()

        # Two gateways, three services, Redis and PostgreSQL (plus its own workers).
        assert len(make.family()) >= 8, make.family()
        await make.stop()
    finally:
        make.kill()


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_second_make_run_on_the_same_folder_is_refused_and_harms_nothing(
    tmp_path: Path,
) -> None:
    env = user_env(
        tmp_path,
        JUSTCHAT_GATEWAYS="1",
        JUSTCHAT_ADMIN_USERNAME=ADMIN,
        JUSTCHAT_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    first = MakeRun(env, tmp_path / "first.log")
    second: MakeRun | None = None
    try:
        assert f"admin         {ADMIN}\n" in await first.banner()
        [supervisor] = first.pids_running("justchat.stack")
        servers = server_pids(tmp_path / "run")
        family = first.family()

        second = MakeRun(env, tmp_path / "second.log")
        assert await second.exit_code() != 0
        refusal = second.output
        assert f"pid {supervisor}" in refusal, refusal
        assert "JUSTCHAT_RUN_DIR" in refusal, refusal
        assert "stale" not in refusal, refusal

        assert all(alive(pid) for pid in servers), refusal
        assert server_pids(tmp_path / "run") == servers
        assert all(alive(pid) for pid in family), refusal
        await all_healthy(env)
        await first.stop()
    finally:
        first.kill()
        if second is not None:
            second.kill()


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_a_folder_whose_stack_died_is_cleaned_up_and_reused(tmp_path: Path) -> None:
    env = user_env(tmp_path, JUSTCHAT_GATEWAYS="1")
    first = MakeRun(env, tmp_path / "first.log")
    second: MakeRun | None = None
    orphans: tuple[int, int] = (0, 0)
    try:
        await first.banner()
        [supervisor] = first.pids_running("justchat.stack")
        services = [pid for module in SERVICE_MODULES for pid in first.pids_running(module)]
        orphans = server_pids(tmp_path / "run")
        os.kill(supervisor, signal.SIGKILL)  # the supervisor dies without cleaning up
        # Its services go with it; Redis and PostgreSQL, in sessions of their own, stay behind.
        await eventually(
            "the services to follow their supervisor", lambda: not any(map(alive, services)), 60
        )
        assert all(alive(pid) for pid in orphans)

        second = MakeRun(env, tmp_path / "second.log")
        output = await second.banner()
        assert "stale server" in output
        assert not any(alive(pid) for pid in orphans), output
        assert server_pids(tmp_path / "run") != orphans
        await all_healthy(env)
        await second.stop()
    finally:
        first.kill()
        if second is not None:
            second.kill()
        for pid in orphans:  # a failed test leaves no orphan behind (the pid may be reused)
            if pid and alive(pid) and serves_from(pid, tmp_path / "run"):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "replica"),
    [("JUSTCHAT_API_PORT", 0), ("JUSTCHAT_GATEWAY_PORT", 1), ("JUSTCHAT_PRESENCE_PORT", 0)],
)
async def test_a_busy_port_names_the_setting_to_change(
    tmp_path: Path, variable: str, replica: int
) -> None:
    env = user_env(tmp_path)
    busy = int(env[variable]) + replica
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", busy))
        squatter.listen()
        make = MakeRun(env, tmp_path / "make-run.log")
        try:
            assert await make.exit_code() != 0
        finally:
            make.kill()
    output = make.output
    assert f"port {busy}" in output, output
    assert f"set {variable} to a free port" in output, output
    # Checked before anything starts: no private server was started (nor left running).
    assert not (tmp_path / "run" / "redis").exists(), output


def make_clean(cwd: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    """``make clean`` from ``cwd`` (its own .venv and caches: never this checkout's)."""
    env = {**os.environ, "JUSTCHAT_RUN_DIR": str(run_dir), "PYTHON": sys.executable}
    return subprocess.run(
        ["make", "-s", "-f", str(ROOT / "Makefile"), "clean"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fill_run_dir(run_dir: Path) -> list[Path]:
    """What a stack leaves in its folder; returns the paths ``make clean`` must remove."""
    (run_dir / "redis").mkdir(parents=True)
    (run_dir / "redis" / "redis.log").write_text("log")
    (run_dir / "postgres" / "pgdata").mkdir(parents=True)
    (run_dir / "postgres" / "pgdata" / "PG_VERSION").write_text("15")
    (run_dir / "jwt-secret").write_text("secret")
    (run_dir / "stack.pid").write_text("1\n")
    return [run_dir / name for name in ("redis", "postgres", "jwt-secret", "stack.pid")]


def test_make_clean_cleans_the_run_dir_it_is_given(tmp_path: Path) -> None:
    cwd, run_dir = tmp_path / "checkout", tmp_path / "elsewhere"
    (cwd / ".run").mkdir(parents=True)
    (cwd / ".run" / "jwt-secret").write_text("another folder's")
    (cwd / ".venv").mkdir()
    removed = fill_run_dir(run_dir)
    (run_dir / "notes.txt").write_text("not the stack's")

    done = make_clean(cwd, run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(path.exists() for path in removed)
    assert (run_dir / "notes.txt").read_text() == "not the stack's"
    assert (cwd / ".run" / "jwt-secret").exists()  # JUSTCHAT_RUN_DIR named another folder
    assert not (cwd / ".venv").exists()


def test_make_clean_refuses_the_folder_of_a_running_stack(tmp_path: Path) -> None:
    cwd, run_dir = tmp_path / "checkout", tmp_path / "run"
    cwd.mkdir()
    removed = fill_run_dir(run_dir)
    with (run_dir / "stack.pid").open("w") as lock:  # what a live supervisor holds
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        done = make_clean(cwd, run_dir)
    assert done.returncode != 0
    assert f"pid {os.getpid()}" in done.stdout + done.stderr
    assert all(path.exists() for path in removed)

    done = make_clean(cwd, run_dir)  # once the stack has stopped
    assert done.returncode == 0, done.stdout + done.stderr
    assert not run_dir.exists()
