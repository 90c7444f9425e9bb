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
from justchat.aio import cancel_and_wait
from justchat.leases import PartitionLeases
from justchat.metrics import Metric, Registry

log = logging.getLogger(__name__)

BATCH: Final = 400  # entries per read, all partitions together
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
Item = tuple[str, bytes, dict[bytes, bytes]]  # (stream, entry id, fields)


class Handler(Protocol[C]):
    async def handle(self, commands: list[C]) -> None:
        """Apply commands in order; raise a ``TRANSIENT`` error to have them all retried."""

    async def fail(self, command: C, error: Exception) -> None:
        """``command`` failed for good: tell whoever is waiting for it."""


class PartitionWorker(Generic[C]):
    """Consumes every partition stream its replica holds, in one loop.

    One loop for all of them means one read, one handler call and one acknowledgement per round
    whatever the number of partitions, so each round trip carries the work of all of them. Each
    stream's entries keep their order within a batch (a channel lives in one stream).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        group: str,
        consumer: str,
        dead_letters: str,
        decoder: msgspec.msgpack.Decoder[C],
        handler: Handler[C],
        dead_count: Metric | None = None,
    ) -> None:
        self.redis, self.group, self.consumer = redis, group, consumer
        self.dead_letters, self.decoder, self.handler = dead_letters, decoder, handler
        self.dead_count = dead_count
        self.reading: list[str] = []  # streams read for new entries
        self.joining: list[str] = []  # streams whose pending entries are taken over first
        self._done: dict[str, list[bytes]] = {}  # handled, to acknowledge with the next request
        self._wake = asyncio.Event()

    def add(self, stream: str) -> None:
        """Start consuming ``stream`` (its lease was acquired): its pending entries first."""
        if stream not in self.reading and stream not in self.joining:
            self.joining.append(stream)
        self._wake.set()

    def remove(self, stream: str) -> None:
        """Stop consuming ``stream`` (its lease is gone). A batch already being handled still
        completes: the handler's idempotence and unique constraints fence a stale owner."""
        for streams in (self.reading, self.joining):
            if stream in streams:
                streams.remove(stream)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                while True:
                    while self.joining:
                        await self._take_over(self.joining[0])
                    await self._read_new()
                    backoff = 0.1
            except Exception as exc:
                if isinstance(exc, TRANSIENT):
                    log.warning("%s: %r; retrying in %.1fs", self.group, exc, backoff)
                else:  # a bug: keep the lane (and its partitions' other commands) going
                    log.exception("%s: unexpected error; retrying in %.1fs", self.group, backoff)
                # What was read but not acknowledged is pending again: take it over first.
                self.joining = [*self.reading, *(s for s in self.joining if s not in self.reading)]
                self.reading = []
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _take_over(self, stream: str) -> None:
        await self._ensure_group(stream)
        await self._drain_pending(stream)
        if stream in self.joining:  # still ours
            self.joining.remove(stream)
            self.reading.append(stream)

    async def _ensure_group(self, stream: str) -> None:
        try:
            # id 0: entries written before the group existed are still consumed.
            await self.redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _drain_pending(self, stream: str) -> None:
        """Take over every entry of ``stream`` read but not acknowledged, oldest first."""
        while stream in self.joining:
            async with self.redis.pipeline(transaction=False) as pipe:
                self._ack_done(pipe)
                pipe.xpending_range(stream, self.group, min="-", max="+", count=BATCH)
                *_, pending = await pipe.execute()
            self._done = {}
            if not pending:
                return
            ids = [cast(bytes, p["message_id"]) for p in pending]
            reply = await self.redis.xclaim(stream, self.group, self.consumer, 0, [*ids])
            # An entry trimmed from the stream comes back without fields, or not at all.
            claimed = [
                (stream, entry_id, fields)
                for entry_id, fields in cast(list[Entry], reply)
                if fields
            ]
            present = {entry_id for _, entry_id, _ in claimed}
            # Trimmed away: nothing left to do but acknowledge them (with the next request).
            self._done.setdefault(stream, []).extend(i for i in ids if i not in present)
            if claimed:
                log.info("%s: took over %s pending entries", stream, len(claimed))
                await self._process(claimed)

    async def _read_new(self) -> None:
        if not self.reading:
            self._wake.clear()
            if not self.joining:
                await self._flush_acks()
                # asyncio.timeout, not wait_for: on 3.11, wait_for loses a cancellation that
                # arrives as the event is set, and the lane would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BLOCK_MS / 1000):
                        await self._wake.wait()
            return
        # COUNT applies per stream: together the streams fill about one BATCH.
        count = max(1, -(-BATCH // len(self.reading)))
        async with self.redis.pipeline(transaction=False) as pipe:
            self._ack_done(pipe)
            pipe.xreadgroup(
                self.group,
                self.consumer,
                dict.fromkeys(self.reading, ">"),
                count=count,
                block=BLOCK_MS,
            )
            *_, reply = await pipe.execute()
        self._done = {}
        batch: list[Item] = []
        for name, entries in cast(list[tuple[bytes, list[Entry]]], reply or []):
            stream = name.decode()
            # A lease lost during the read: its entries stay pending for the next owner.
            if stream in self.reading:
                batch.extend((stream, entry_id, fields) for entry_id, fields in entries)
        if batch:
            await self._process(batch)

    def _ack_done(self, pipe: Pipeline) -> None:
        """Acknowledge the entries handled so far in ``pipe``, ahead of its next request.

        They stay in ``_done`` until the pipeline succeeds: XACK is idempotent, and an entry
        whose acknowledgement was lost would otherwise be taken over and handled again.
        """
        for stream, ids in self._done.items():
            if ids:
                pipe.xack(stream, self.group, *ids)

    async def _flush_acks(self) -> None:
        if any(self._done.values()):
            async with self.redis.pipeline(transaction=False) as pipe:
                self._ack_done(pipe)
                await pipe.execute()
            self._done = {}

    async def _process(self, batch: list[Item]) -> None:
        decoded: list[tuple[str, bytes, C]] = []
        for stream, entry_id, fields in batch:
            try:
                decoded.append((stream, entry_id, self.decoder.decode(fields[b"c"])))
            except (KeyError, msgspec.DecodeError) as exc:
                await self._dead_letter(stream, entry_id, fields.get(b"c", b""), exc)
        try:
            await self.handler.handle([command for _, _, command in decoded])
        except TRANSIENT:
            raise  # an outage: run() retries; the entries stay pending meanwhile
        except Exception as exc:
            log.warning("%s: batch failed (%r); isolating the culprit", self.group, exc)
            await self._one_by_one(decoded)
        for stream, entry_id, _ in batch:
            self._done.setdefault(stream, []).append(entry_id)

    async def _one_by_one(self, decoded: list[tuple[str, bytes, C]]) -> None:
        for stream, entry_id, command in decoded:
            try:
                await self.handler.handle([command])
            except TRANSIENT:
                raise
            except Exception as exc:
                await self._dead_letter(stream, entry_id, events.encode(command), exc)
                try:
                    await self.handler.fail(command, exc)
                except TRANSIENT:
                    raise
                except Exception:  # it is dead-lettered: the partition must go on
                    log.exception("%s: telling about entry %s failed", stream, entry_id.decode())

    async def _dead_letter(
        self, stream: str, entry_id: bytes, raw: bytes, error: Exception
    ) -> None:
        log.error("%s: entry %s failed for good: %r", stream, entry_id.decode(), error)
        if self.dead_count is not None:
            self.dead_count.inc()
        await self.redis.xadd(
            self.dead_letters,
            {"stream": stream, "entry": entry_id, "c": raw, "error": repr(error)[:500]},
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )


class PartitionedConsumer(Generic[C]):
    """Leases plus the ``PartitionWorker`` lanes that consume the partitions this replica owns.

    Partition p is served by lane p % ``lanes`` (default: a lane per partition). One lane makes
    the biggest batches, so the least work per command when the handler batches (chat-service
    stores and publishes a batch at a fixed cost); more lanes overlap one lane's waits (a
    commit, a round trip) with another's work, which suits a handler that works command by
    command.
    """

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
        lanes: int | None = None,
    ) -> None:
        self.name, self.stream = name, stream
        self.consumer = f"{name}-{uuid.uuid4().hex[:12]}"
        self.dead = registry.counter(
            f"{name.replace('-', '_')}_dead_letters", "entries moved to the dead-letter stream"
        )
        self.lanes = [
            PartitionWorker(
                redis,
                group=name,
                consumer=self.consumer,
                dead_letters=dead_letters,
                decoder=decoder,
                handler=handler,
                dead_count=self.dead,
            )
            for _ in range(partitions if lanes is None else max(1, min(lanes, partitions)))
        ]
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
        owned = registry.gauge(
            f"{name.replace('-', '_')}_partitions_owned", "stream partitions this replica owns"
        )
        registry.on_collect(lambda: owned.set(len(self.leases.owned)))

    async def run(self) -> None:
        tasks = [asyncio.create_task(self.leases.run(), name=f"{self.name}-leases")]
        tasks += [
            asyncio.create_task(lane.run(), name=f"{self.name}-lane-{i}")
            for i, lane in enumerate(self.lanes)
        ]
        try:
            await asyncio.gather(*tasks)  # they run until cancelled; a crash ends them all
        finally:
            await cancel_and_wait(tasks)
            await self.leases.release_all()

    async def _start(self, partition: int) -> None:
        self.lanes[partition % len(self.lanes)].add(self.stream(partition))

    async def _stop(self, partition: int) -> None:
        self.lanes[partition % len(self.lanes)].remove(self.stream(partition))
