"""``python -m justchat.stack``: the whole system on one machine, supervised (``make run``).

Uses ``REDIS_URL`` / ``DATABASE_URL`` when set, otherwise private servers under ``.run/``;
applies migrations; starts the dashboard, chat-service, presence-service and N gateways; prints
the URLs once every service answers ``/health``; restarts a service that dies, with backoff, as
compose or Kubernetes would; and on Ctrl-C or SIGTERM stops everything, private servers included.
The tests start the same ``Stack`` on free ports.

A stack owns its run folder (``stack.pid``, locked while its supervisor lives): a second stack on
the same folder is refused before it touches anything, so it can never stop the first one's
servers. Ports are checked before anything starts, and a busy one names the variable to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import resource
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.error import HTTPError, URLError

import asyncpg

from justchat import db, devservers, logs
from justchat.errors import ConfigError, JustchatError
from justchat.settings import generate_secret

log = logging.getLogger(__name__)

READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0
MAX_BACKOFF_S: Final = 30.0
HEALTHY_RESET_S: Final = 60.0  # a service up this long gets its backoff reset
RUN_LOCK: Final = "stack.pid"  # in the run folder: the supervisor's pid, flock-ed while it lives
# A gateway holding 50,000 sockets needs that many descriptors; raised up to this when allowed.
WANTED_FDS: Final = 65536
_PR_SET_PDEATHSIG: Final = 1
ADMIN_HINT: Final = "none yet: set JUSTCHAT_ADMIN_USERNAME and JUSTCHAT_ADMIN_PASSWORD and restart"


class StackError(JustchatError):
    """The stack cannot start as configured; the message says what to change."""


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    gateways: int = 2
    host: str = "127.0.0.1"
    api_port: int = 8000
    gateway_port: int = 8100
    chat_port: int = 8200  # replica i of chat-service listens on chat_port + i
    presence_port: int = 8300
    chat_replicas: int = 1
    presence_replicas: int = 1
    run_dir: Path = Path(".run")
    redis_url: str = ""  # empty: start a private server
    database_url: str = ""
    server_source: devservers.Source = "auto"
    env: Mapping[str, str] = field(default_factory=dict)  # extra JUSTCHAT_* for every service

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StackConfig:
        def port(name: str, default: int) -> int:
            try:
                return int(environ.get(name) or default)
            except ValueError as exc:
                raise ConfigError(f"{name} must be a port number") from exc

        gateways = port("JUSTCHAT_GATEWAYS", 2)
        if not 1 <= gateways <= 64:
            raise ConfigError("JUSTCHAT_GATEWAYS must be 1..64")
        return cls(
            gateways=gateways,
            host=environ.get("JUSTCHAT_HOST") or "127.0.0.1",
            api_port=port("JUSTCHAT_API_PORT", 8000),
            gateway_port=port("JUSTCHAT_GATEWAY_PORT", 8100),
            chat_port=port("JUSTCHAT_CHAT_PORT", 8200),
            presence_port=port("JUSTCHAT_PRESENCE_PORT", 8300),
            run_dir=Path(environ.get("JUSTCHAT_RUN_DIR") or ".run"),
            redis_url=environ.get("REDIS_URL", ""),
            database_url=environ.get("DATABASE_URL", ""),
            server_source=_source(environ.get("JUSTCHAT_SERVER_SOURCE") or "auto"),
            env={k: v for k, v in environ.items() if k.startswith("JUSTCHAT_")},
        )


def _replica(name: str, index: int) -> str:
    """``chat``, ``chat-1``, ``chat-2``...: the first replica keeps the plain name."""
    return name if index == 0 else f"{name}-{index}"


def _source(value: str) -> devservers.Source:
    if value not in ("auto", "system", "package"):
        raise ConfigError("JUSTCHAT_SERVER_SOURCE must be auto, system or package")
    return value  # type: ignore[return-value]


@dataclass(kw_only=True)
class Service:
    name: str
    module: str
    port: int
    env: dict[str, str]
    port_variable: str = ""  # the setting that chose the port: replica i gets its value + i
    replica: int = 0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    @property
    def port_setting(self) -> str:
        """How the user sets this port: ``JUSTCHAT_GATEWAY_PORT + 1`` for the second gateway."""
        return self.port_variable + (f" + {self.replica}" if self.replica else "")


class Stack:
    """The running system: its servers, its services, and the supervisor that keeps them up."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.servers: list[devservers.PrivateServer] = []
        self.services: list[Service] = []
        self.redis_url = config.redis_url
        self.database_url = config.database_url
        self.stopping = False
        self._supervisors: dict[str, asyncio.Task[None]] = {}
        self._lock: devservers.Lock | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.config.host}:{self.config.api_port}"

    @property
    def gateway_urls(self) -> list[str]:
        return [
            f"ws://{self.config.host}:{s.port}/ws" for s in self.services if s.module == "gateway"
        ]

    async def __aenter__(self) -> Stack:
        """``async with Stack(config) as stack``: started, and stopped however the block ends
        (a start that fails half-way stops what it started)."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        cfg = self.config
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _claim_run_dir(cfg.run_dir)
        raise_fd_limit()
        planned = self._plan()
        for service in planned:
            _check_port(cfg.host, service)
        if not self.redis_url:
            server = await asyncio.to_thread(
                devservers.start_redis, cfg.run_dir / "redis", source=cfg.server_source
            )
            self.servers.append(server)
            self.redis_url = server.url
        if not self.database_url:
            server = await asyncio.to_thread(
                devservers.start_postgres, cfg.run_dir / "postgres", source=cfg.server_source
            )
            self.servers.append(server)
            self.database_url = await _ensure_database(server.url, "justchat")
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

        base = {
            **os.environ,
            **cfg.env,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "JUSTCHAT_JWT_SECRET": cfg.env.get("JUSTCHAT_JWT_SECRET") or _secret(cfg.run_dir),
            "JUSTCHAT_HOST": cfg.host,
            "PYTHONUNBUFFERED": "1",
        }
        for service in planned:
            service.env = {**base, "JUSTCHAT_PORT": str(service.port)}
            if service.module == "gateway":
                public_url = f"ws://{cfg.host}:{service.port}/ws"
                service.env.setdefault("JUSTCHAT_GATEWAY_PUBLIC_URL", public_url)
        self.services = planned
        for service in self.services:
            await self._spawn(service)
        await asyncio.gather(*(self._wait_ready(s) for s in self.services))
        for service in self.services:
            self._watch(service)

    def _plan(self) -> list[Service]:
        """Every service to run, on its port, without its environment yet."""
        cfg = self.config
        runs = [
            ("dashboard", "dashboard_service", cfg.api_port, 1, "JUSTCHAT_API_PORT"),
            ("chat", "chat_service", cfg.chat_port, cfg.chat_replicas, "JUSTCHAT_CHAT_PORT"),
            (
                "presence",
                "presence_service",
                cfg.presence_port,
                cfg.presence_replicas,
                "JUSTCHAT_PRESENCE_PORT",
            ),
            ("gateway", "gateway", cfg.gateway_port, cfg.gateways, "JUSTCHAT_GATEWAY_PORT"),
        ]
        return [
            Service(
                name=f"gateway-{i}" if module == "gateway" else _replica(kind, i),
                module=module,
                port=first + i,
                env={},
                port_variable=variable,
                replica=i,
            )
            for kind, module, first, count, variable in runs
            for i in range(count)
        ]

    async def admins(self) -> list[str]:
        """Usernames of the admin accounts (the banner says how to make one when there is none)."""
        conn = await asyncpg.connect(self.database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT username FROM users WHERE role = 'admin' ORDER BY id LIMIT 5"
            )
        finally:
            await conn.close()
        return [str(row["username"]) for row in rows]

    async def stop(self) -> None:
        self.stopping = True
        for task in list(self._supervisors.values()):
            await _cancel(task)
        self._supervisors.clear()
        await asyncio.gather(*(_terminate(s) for s in self.services))
        for server in reversed(self.servers):
            await asyncio.to_thread(server.stop)
        self.servers.clear()
        if self._lock is not None:  # last: the folder is free once nothing runs from it
            self._lock.release()
            self._lock = None

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    async def restart(self, *names: str) -> None:
        """Stop the named services (all if none) cleanly, start them again, wait until ready."""
        chosen = [s for s in self.services if not names or s.name in names]
        for service in chosen:
            await _cancel(self._supervisors.pop(service.name, None))
        await asyncio.gather(*(_terminate(s) for s in chosen))
        for service in chosen:
            await self._spawn(service)
        await asyncio.gather(*(self._wait_ready(s) for s in chosen))
        for service in chosen:
            self._watch(service)

    def _watch(self, service: Service) -> None:
        self._supervisors[service.name] = asyncio.create_task(
            self._supervise(service), name=f"supervise-{service.name}"
        )

    async def _spawn(self, service: Service) -> None:
        service.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            service.module,
            env=service.env,
            start_new_session=True,  # Ctrl-C reaches the supervisor, which stops children in order
            preexec_fn=_die_with_parent,
        )
        log.info("started %s (pid %s) on port %s", service.name, service.process.pid, service.port)

    async def _wait_ready(self, service: Service) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if service.process is not None and service.process.returncode is not None:
                raise StackError(
                    f"{service.name} exited with {service.process.returncode} before it was"
                    f" ready (its log is above; if port {service.port} was taken meanwhile, set"
                    f" {service.port_variable} to a free port)"
                )
            if await asyncio.to_thread(_healthy, service.health_url):
                return
            await asyncio.sleep(0.2)
        raise JustchatError(f"{service.name} not healthy after {READY_TIMEOUT_S:.0f}s")

    async def _supervise(self, service: Service) -> None:
        backoff = 1.0
        while not self.stopping:
            process = service.process
            if process is None:
                return
            started = time.monotonic()
            code = await process.wait()
            if self.stopping:
                return
            if time.monotonic() - started > HEALTHY_RESET_S:
                backoff = 1.0
            log.error("%s exited with %s; restarting in %.0fs", service.name, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            service.restarts += 1
            await self._spawn(service)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _terminate(service: Service) -> None:
    process = service.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("%s did not stop in %.0fs; killing it", service.name, STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _claim_run_dir(run_dir: Path) -> devservers.Lock:
    try:
        return devservers.claim(run_dir / RUN_LOCK)
    except devservers.InUse as exc:
        owner = f"pid {exc.pid}" if exc.pid is not None else "another process"
        stop = f" (Ctrl-C in its terminal, or kill {exc.pid})" if exc.pid is not None else ""
        raise StackError(
            f"the run folder {run_dir} belongs to a running stack, {owner}: stop that one first"
            f"{stop}, or set JUSTCHAT_RUN_DIR to another folder to run a second stack"
        ) from None


def _check_port(host: str, service: Service) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # uvicorn sets SO_REUSEADDR too: TIME_WAIT leftovers don't count as busy, listeners do.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, service.port))
        except OSError as exc:
            run = "" if service.module == "dashboard_service" else " (replica i uses it + i)"
            raise StackError(
                f"port {service.port} on {host}, for {service.name} ({service.port_setting}),"
                f" is not free ({exc.strerror}): set {service.port_variable} to a free port{run}"
            ) from None


def raise_fd_limit() -> None:
    """Let this process and the services it starts open as many files as they may.

    The soft limit (often 1024) goes up to the hard one, or both up to ``WANTED_FDS`` when we are
    allowed to (root): a gateway needs a descriptor per connection. Never lowers either.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinity = resource.RLIM_INFINITY
    if hard == infinity:
        attempts = [(WANTED_FDS, hard)]
    else:
        attempts = [(WANTED_FDS, WANTED_FDS)] if hard < WANTED_FDS else []
        attempts.append((hard, hard))
    for new_soft, new_hard in attempts:
        if soft == infinity or new_soft <= soft:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
        except (ValueError, OSError):
            continue  # not allowed to raise the hard limit: the next attempt keeps it
        log.info("open files limit raised from %s to %s", soft, new_soft)
        return


def _die_with_parent() -> None:
    """Runs in the child before exec: if the supervisor is killed, its services go too."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except HTTPError as error:  # 503 while starting: close it, or its socket leaks
        error.close()
        return False
    except (URLError, OSError):
        return False


def _secret(run_dir: Path) -> str:
    """A JWT secret kept under the run dir, so tokens survive restarts of ``make run``."""
    path = run_dir / "jwt-secret"
    if not path.exists():
        path.write_text(generate_secret())
        path.chmod(0o600)
    return path.read_text().strip()


async def _ensure_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def banner(stack: Stack, admins: list[str]) -> str:
    """What ``make run`` prints once every service answers: where things are, what to do next."""
    api = stack.api_url
    return (
        "\njustchat is running\n"
        f"  REST API      {api}/api/v1\n"
        f"  Swagger UI    {api}/api/v1/docs\n"
        f"  OpenAPI       {api}/api/v1/openapi.json\n"
        + "".join(f"  gateway       {url}\n" for url in stack.gateway_urls)
        + f"  Redis         {stack.redis_url}\n"
        f"  PostgreSQL    {stack.database_url}\n"
        f"  admin         {', '.join(admins) if admins else ADMIN_HINT}\n"
        "Press Ctrl-C to stop.\n\n"
    )


async def _run(config: StackConfig) -> int:
    stack = Stack(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(stack.start())
        waiting = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()
            sys.stdout.write(banner(stack, await stack.admins()))
            sys.stdout.flush()
            await waiting
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, JustchatError):
                await starting
        log.info("stopping")
        return 0
    except (JustchatError, OSError, asyncpg.PostgresError) as exc:
        log.error("could not start: %s", exc)
        return 1
    finally:
        await stack.stop()
        log.info("stopped")


def main() -> None:
    logs.setup("stack", fmt=os.environ.get("JUSTCHAT_LOG_FORMAT", "text"))
    try:
        config = StackConfig.from_env(os.environ)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        raise SystemExit(2) from exc
    raise SystemExit(asyncio.run(_run(config)))


if __name__ == "__main__":
    main()
