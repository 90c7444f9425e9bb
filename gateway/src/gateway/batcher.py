"""Redis commands of many connections, sent together: one pipeline per event-loop tick.

Each caller awaits its own reply, but the commands that pile up while a pipeline is on its
way go out together in the next one, so a busy gateway makes a few round trips per tick
instead of one per command, on one connection of the pool. Scripts run with EVALSHA from the
first call (no SCRIPT EXISTS per call); a Redis that lost them (NOSCRIPT) gets them loaded
again and the failed calls re-sent once.

Overload becomes waiting, never failure: at most ``max_pending`` commands wait to be sent, and
the callers beyond that wait for room. Commands of one caller keep their order (a caller has
one command in flight at a time, and pipelines go out one after the other, in order).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

log = logging.getLogger(__name__)

MAX_PENDING: Final = 10_000
MAX_BATCH: Final = 1_000

_Call = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


class CommandBatcher:
    def __init__(
        self, redis: aioredis.Redis, *, max_pending: int = MAX_PENDING, max_batch: int = MAX_BATCH
    ) -> None:
        self._redis = redis
        self._max_batch = max_batch
        self._pending: collections.deque[_Call] = collections.deque()
        self._room = asyncio.Semaphore(max_pending)
        self._wake = asyncio.Event()
        self._scripts: dict[str, str] = {}  # sha1 -> source
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[_Call] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pipelines = 0  # sent so far (for metrics and tests)

    async def start(self) -> None:
        """Load the registered scripts (best effort: NOSCRIPT loads them later) and run."""
        self._loop = asyncio.get_running_loop()  # looked up once: each lookup is a getpid()
        with contextlib.suppress(RedisError, OSError):
            await self._load_scripts()
        self._task = asyncio.create_task(self._run(), name="command-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in [*self._in_flight, *self._pending]:
            if not future.done():
                future.set_exception(RedisError("gateway shutting down"))
        self._pending.clear()

    def script(self, source: str) -> str:
        """Register a Lua script; returns the sha to pass to ``evalsha``."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._scripts[sha] = source
        return sha

    async def evalsha(self, sha: str, keys: list[str], args: list[Any]) -> Any:
        return await self.call("EVALSHA", sha, len(keys), *keys, *args)

    async def call(self, *args: Any) -> Any:
        """Send one command with the next pipeline and return its reply (or raise its error)."""
        async with self._room:
            future: asyncio.Future[Any] = (self._loop or asyncio.get_running_loop()).create_future()
            self._pending.append((args, future))
            self._wake.set()
            return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                count = min(len(self._pending), self._max_batch)
                batch = [self._pending.popleft() for _ in range(count)]
                self._in_flight = [call for call in batch if not call[1].done()]
                await self._send(self._in_flight)
                self._in_flight = []

    async def _send(self, batch: list[_Call]) -> None:
        if not batch:
            return
        try:
            replies = await self._execute([args for args, _ in batch])
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                log.info("redis lost the gateway's scripts; loading them again")
                await self._load_scripts()
                again = await self._execute([batch[i][0] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except Exception as exc:  # every caller gets the error; the batcher goes on
            if not isinstance(exc, RedisError | OSError):
                log.exception("pipeline of %s commands failed", len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _load_scripts(self) -> None:
        for source in self._scripts.values():
            await self._redis.script_load(source)

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.pipelines += 1
        async with self._redis.pipeline(transaction=False) as pipe:
            for args in commands:
                pipe.execute_command(*args)
            return await pipe.execute(raise_on_error=False)
