"""``justchat.streams.PartitionWorker`` against a real Redis, with a recording handler: one lane
serves several partition streams in one loop, takes over pending entries first, keeps each
stream's order, and acknowledges only what its handler finished."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from justchat import events
from justchat.events import GuestCmd
from justchat.streams import PartitionWorker

GROUP = "chat"


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failed: list[str] = []
        self.outages = 0  # raise this many transient errors first

    @property
    def handled(self) -> list[str]:
        return [name for batch in self.batches for name in batch]

    async def handle(self, commands: list[GuestCmd]) -> None:
        if self.outages:
            self.outages -= 1
            raise RedisConnectionError("simulated outage")
        if any(c.username in ("poison", "poison-twice") for c in commands):
            raise ValueError("poison")
        self.batches.append([c.username for c in commands])

    async def fail(self, command: GuestCmd, error: Exception) -> None:
        self.failed.append(command.username)
        if command.username == "poison-twice":
            raise RuntimeError("cannot even tell anyone")


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return f"{redis_prefix}pw{uuid.uuid4().hex[:8]}:"


@contextlib.asynccontextmanager
async def running(
    redis: aioredis.Redis, prefix: str, handler: Recorder
) -> AsyncIterator[PartitionWorker[GuestCmd]]:
    worker: PartitionWorker[GuestCmd] = PartitionWorker(
        redis,
        group=GROUP,
        consumer="lane-test",
        dead_letters=f"{prefix}dead",
        decoder=msgspec.msgpack.Decoder(GuestCmd),
        handler=handler,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def put(redis: aioredis.Redis, stream: str, *names: str) -> None:
    for name in names:
        await redis.xadd(stream, {"c": events.encode(GuestCmd(username=name))})


async def eventually(what: str, check: Callable[[], object], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def pending(redis: aioredis.Redis, stream: str) -> int:
    return int((await redis.xpending(stream, GROUP))["pending"])


async def test_one_lane_serves_several_streams_in_order_and_acknowledges_them(
    redis: aioredis.Redis, prefix: str
) -> None:
    streams = [f"{prefix}cmd:{p}" for p in range(3)]
    handler = Recorder()
    for p, stream in enumerate(streams):
        await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        await put(redis, stream, *(f"p{p}-{i}" for i in range(30)))
    async with running(redis, prefix, handler) as worker:
        for stream in streams:
            worker.add(stream)
        await eventually("90 commands", lambda: len(handler.handled) == 90)
        # Entries already waiting on every stream come in one round.
        assert len(handler.batches[0]) == 90
        for p in range(3):
            assert [n for n in handler.handled if n.startswith(f"p{p}-")] == [
                f"p{p}-{i}" for i in range(30)
            ]
        await put(redis, streams[1], "late")
        await eventually("the late command", lambda: handler.handled[-1:] == ["late"])
        for stream in streams:
            assert await pending(redis, stream) == 0  # acknowledged with the next read
    assert worker.reading == streams


async def test_pending_entries_are_taken_over_before_new_ones(
    redis: aioredis.Redis, prefix: str
) -> None:
    stream = f"{prefix}cmd:0"
    await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await put(redis, stream, "old-1", "old-2")
    # A previous owner read them and died before acknowledging.
    await redis.xreadgroup(GROUP, "dead-owner", {stream: ">"}, count=10)
    await put(redis, stream, "new-1")
    handler = Recorder()
    async with running(redis, prefix, handler) as worker:
        worker.add(stream)
        await eventually("3 commands", lambda: len(handler.handled) == 3)
        assert handler.handled == ["old-1", "old-2", "new-1"]
        await put(redis, stream, "new-2")
        await eventually("new-2", lambda: handler.handled[-1:] == ["new-2"])
        assert await pending(redis, stream) == 0


async def test_an_outage_leaves_the_batch_pending_and_it_is_handled_after(
    redis: aioredis.Redis, prefix: str
) -> None:
    streams = [f"{prefix}cmd:{p}" for p in range(2)]
    handler = Recorder()
    handler.outages = 2
    async with running(redis, prefix, handler) as worker:
        for stream in streams:
            worker.add(stream)
        await eventually("both streams read", lambda: len(worker.reading) == 2)
        await put(redis, streams[0], "a1", "a2")
        await put(redis, streams[1], "b1")
        await eventually("3 commands", lambda: len(handler.handled) == 3)
        assert sorted(handler.handled) == ["a1", "a2", "b1"]
        assert handler.handled.index("a1") < handler.handled.index("a2")
        assert handler.outages == 0
        await put(redis, streams[0], "a3")
        await eventually("a3", lambda: handler.handled[-1:] == ["a3"])
        assert [await pending(redis, s) for s in streams] == [0, 0]


async def test_a_bad_command_is_dead_lettered_and_the_rest_handled(
    redis: aioredis.Redis, prefix: str
) -> None:
    stream = f"{prefix}cmd:0"
    handler = Recorder()
    async with running(redis, prefix, handler) as worker:
        worker.add(stream)
        await eventually("the stream read", lambda: worker.reading == [stream])
        await put(redis, stream, "ok-1", "poison", "ok-2")
        await redis.xadd(stream, {"c": b"\xc1 not msgpack"})
        await put(redis, stream, "ok-3")
        await eventually("ok-3", lambda: "ok-3" in handler.handled)
        assert handler.handled == ["ok-1", "ok-2", "ok-3"]
        assert handler.failed == ["poison"]
        dead = await redis.xrange(f"{prefix}dead")
        assert len(dead) == 2
        assert {f[b"stream"] for _, f in dead} == {stream.encode()}
        await put(redis, stream, "ok-4")
        await eventually("ok-4", lambda: "ok-4" in handler.handled)
        assert await pending(redis, stream) == 0


async def test_a_removed_stream_is_no_longer_read(redis: aioredis.Redis, prefix: str) -> None:
    kept, removed = f"{prefix}cmd:0", f"{prefix}cmd:1"
    handler = Recorder()
    async with running(redis, prefix, handler) as worker:
        worker.add(kept)
        worker.add(removed)
        await eventually("both read", lambda: len(worker.reading) == 2)
        worker.remove(removed)
        await put(redis, removed, "not-mine")
        await put(redis, kept, "mine")
        await eventually("mine", lambda: "mine" in handler.handled)
        # One more round, so that a read that still included the removed stream is over.
        await put(redis, kept, "mine-2")
        await eventually("mine-2", lambda: "mine-2" in handler.handled)
        assert "not-mine" not in handler.handled
        assert worker.reading == [kept]


async def test_a_failure_to_report_a_bad_command_does_not_stop_the_lane(
    redis: aioredis.Redis, prefix: str
) -> None:
    streams = [f"{prefix}cmd:0", f"{prefix}cmd:1"]
    handler = Recorder()
    async with running(redis, prefix, handler) as worker:
        for stream in streams:
            worker.add(stream)
        await eventually("both read", lambda: len(worker.reading) == 2)
        await put(redis, streams[0], "ok-1", "poison-twice", "ok-2")
        await eventually("ok-2", lambda: "ok-2" in handler.handled)
        await put(redis, streams[1], "ok-3")
        await eventually("ok-3", lambda: "ok-3" in handler.handled)
        assert handler.failed == ["poison-twice"]
        assert len(await redis.xrange(f"{prefix}dead")) == 1
        await put(redis, streams[0], "ok-4")
        await eventually("ok-4", lambda: "ok-4" in handler.handled)
        assert [await pending(redis, s) for s in streams] == [0, 0]
