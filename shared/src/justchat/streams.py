"""Partitioned stream consumers: one owner per partition, acknowledge only after the effects.

A service's replicas share P partition streams through leases (``justchat.leases``). The owner of
a partition first takes over whatever the previous owner read but did not acknowledge, in stream
order, then reads new entries. A batch is handed to the ``Handler``; the entries are acknowledged
(XACK) only when it returns, so a crash anywhere before that means the batch is delivered again
and the handler must be idempotent. The XACK travels in the same pipeline as the next read, so
a batch costs one Redis round trip besides the handler's own: under load the next batch is
already waiting, and when idle the read returns as soon as an entry arrives (batches grow with
the load and never wait to fill).

Failures: while PostgreSQL or Redis is unreachable the batch is retried with backoff and stays
pending, so nothing is lost. A command that fails on its own (bad data) is given to
``Handler.fail``, copied to the dead-letter stream and acknowledged, so it cannot block its
partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar, cast

import asyncpg
import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from justchat import events
from justchat.leases import PartitionLeases
from justchat.metrics import Metric, Registry

log = logging.getLogger(__name__)

BATCH: Final = 200
BLOCK_MS: Final = 1000
DEAD_LETTER_MAXLEN: Final = 10_000
TRANSIENT: Final = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    RedisError,
)

C = TypeVar("C", bound=msgspec.Struct)
Entry = tuple[bytes, dict[bytes, bytes]]


class Handler(Protocol[C]):
    async def handle(self, commands: list[C]) -> None:
        """Apply commands in order; raise a ``TRANSIENT`` error to have them all retried."""

    async def fail(self, command: C, error: Exception) -> None:
        """``command`` failed for good: tell whoever is waiting for it."""


class PartitionWorker(Generic[C]):
    """Consumes one partition stream while its replica holds the partition's lease."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        stream: str,
        group: str,
        consumer: str,
        dead_letters: str,
        decoder: msgspec.msgpack.Decoder[C],
        handler: Handler[C],
        dead_count: Metric | None = None,
    ) -> None:
        self.redis, self.stream, self.group, self.consumer = redis, stream, group, consumer
        self.dead_letters, self.decoder, self.handler = dead_letters, decoder, handler
        self.dead_count = dead_count
        self._done: list[bytes] = []  # entries handled, to acknowledge with the next request

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._ensure_group()
                await self._drain_pending()
                while True:
                    await self._read_new()
                    backoff = 0.1
            except TRANSIENT as exc:
                log.warning("%s: %r; retrying in %.1fs", self.stream, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _ensure_group(self) -> None:
        try:
            # id 0: entries written before the group existed are still consumed.
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_pending(self) -> None:
        """Take over every entry read but not acknowledged by anyone, oldest first."""
        while True:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._ack_done(pipe)
                pipe.xpending_range(self.stream, self.group, min="-", max="+", count=BATCH)
                *_, pending = await pipe.execute()
            self._done = []
            if not pending:
                return
            ids = [cast(bytes, p["message_id"]) for p in pending]
            reply = await self.redis.xclaim(self.stream, self.group, self.consumer, 0, [*ids])
            # An entry trimmed from the stream comes back without fields, or not at all.
            claimed = [
                (entry_id, fields) for entry_id, fields in cast(list[Entry], reply) if fields
            ]
            present = {entry_id for entry_id, _ in claimed}
            # Trimmed away: nothing left to do but acknowledge them (with the next request).
            self._done.extend(i for i in ids if i not in present)
            if claimed:
                log.info("%s: took over %s pending entries", self.stream, len(claimed))
                await self._process(claimed)

    async def _read_new(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self._ack_done(pipe)
            pipe.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=BATCH, block=BLOCK_MS
            )
            *_, reply = await pipe.execute()
        self._done = []
        for _, entries in cast(list[tuple[bytes, list[Entry]]], reply or []):
            await self._process(entries)

    def _ack_done(self, pipe: Pipeline) -> None:
        """Acknowledge the entries handled so far in ``pipe``, ahead of its next request.

        They stay in ``_done`` until the pipeline succeeds: XACK is idempotent, and an entry
        whose acknowledgement was lost would otherwise be taken over and handled again.
        """
        if self._done:
            pipe.xack(self.stream, self.group, *self._done)

    async def _process(self, entries: list[Entry]) -> None:
        decoded: list[tuple[bytes, C]] = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, self.decoder.decode(fields[b"c"])))
            except (KeyError, msgspec.DecodeError) as exc:
                await self._dead_letter(entry_id, fields.get(b"c", b""), exc)
        try:
            await self.handler.handle([command for _, command in decoded])
        except TRANSIENT:
            raise  # an outage: run() retries; the entries stay pending meanwhile
        except Exception as exc:
            log.warning("%s: batch failed (%r); isolating the culprit", self.stream, exc)
            await self._one_by_one(decoded)
        self._done.extend(entry_id for entry_id, _ in entries)

    async def _one_by_one(self, decoded: list[tuple[bytes, C]]) -> None:
        for entry_id, command in decoded:
            try:
                await self.handler.handle([command])
            except TRANSIENT:
                raise
            except Exception as exc:
                await self._dead_letter(entry_id, events.encode(command), exc)
                await self.handler.fail(command, exc)

    async def _dead_letter(self, entry_id: bytes, raw: bytes, error: Exception) -> None:
        log.error("%s: entry %s failed for good: %r", self.stream, entry_id.decode(), error)
        if self.dead_count is not None:
            self.dead_count.inc()
        await self.redis.xadd(
            self.dead_letters,
            {"stream": self.stream, "entry": entry_id, "c": raw, "error": repr(error)[:500]},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )


class PartitionedConsumer(Generic[C]):
    """Leases plus one ``PartitionWorker`` task per partition this replica owns."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        name: str,
        partitions: int,
        ttl_ms: int,
        stream: Callable[[int], str],
        lease: Callable[[int], str],
        replicas_key: str,
        dead_letters: str,
        decoder: msgspec.msgpack.Decoder[C],
        handler: Handler[C],
        registry: Registry,
    ) -> None:
        self.redis, self.name, self.stream = redis, name, stream
        self.dead_letters, self.decoder, self.handler = dead_letters, decoder, handler
        self.consumer = f"{name}-{uuid.uuid4().hex[:12]}"
        self.workers: dict[int, asyncio.Task[None]] = {}
        self.leases = PartitionLeases(
            redis,
            lease_key=lease,
            replicas_key=replicas_key,
            replica=self.consumer,
            partitions=partitions,
            ttl_ms=ttl_ms,
            on_acquire=self._start,
            on_release=self._stop,
        )
        self.dead = registry.counter(
            f"{name.replace('-', '_')}_dead_letters", "entries moved to the dead-letter stream"
        )
        owned = registry.gauge(
            f"{name.replace('-', '_')}_partitions_owned", "stream partitions this replica owns"
        )
        registry.on_collect(lambda: owned.set(len(self.leases.owned)))

    async def run(self) -> None:
        try:
            await self.leases.run()
        finally:
            await self.leases.release_all()

    async def _start(self, partition: int) -> None:
        worker = PartitionWorker(
            self.redis,
            stream=self.stream(partition),
            group=self.name,
            consumer=self.consumer,
            dead_letters=self.dead_letters,
            decoder=self.decoder,
            handler=self.handler,
            dead_count=self.dead,
        )
        self.workers[partition] = asyncio.create_task(worker.run(), name=f"partition-{partition}")

    async def _stop(self, partition: int) -> None:
        task = self.workers.pop(partition, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
