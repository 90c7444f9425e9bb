"""The command batcher: one pipeline for the commands of many callers, replies and errors to
their own callers, scripts reloaded on NOSCRIPT, and waiting (not failing) when full."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.batcher import CommandBatcher


def sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class FakePipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.commands: list[tuple[Any, ...]] = []

    async def __aenter__(self) -> FakePipeline:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        assert not raise_on_error
        self.redis.pipelines.append(self.commands)
        await self.redis.gate.wait()  # the round trip
        if self.redis.down:
            raise RedisConnectionError("connection reset")
        return [self.redis.reply(args) for args in self.commands]


class FakeRedis:
    def __init__(self) -> None:
        self.pipelines: list[list[tuple[Any, ...]]] = []
        self.loaded: set[str] = set()
        self.down = False
        self.gate = asyncio.Event()
        self.gate.set()

    def pipeline(self, transaction: bool) -> FakePipeline:
        assert not transaction
        return FakePipeline(self)

    async def script_load(self, source: str) -> str:
        self.loaded.add(sha(source))
        return sha(source)

    def reply(self, args: tuple[Any, ...]) -> Any:
        if args[0] == "EVALSHA":
            return NoScriptError("NOSCRIPT") if args[1] not in self.loaded else f"ran {args[3:]}"
        if args[0] == "BAD":
            return ResponseError("ERR unknown command")
        return f"ok {args}"


async def started(redis: FakeRedis, **options: Any) -> CommandBatcher:
    batcher = CommandBatcher(redis, **options)  # type: ignore[arg-type]
    await batcher.start()
    return batcher


async def test_commands_of_one_tick_go_in_one_pipeline_and_each_caller_gets_its_reply() -> None:
    redis = FakeRedis()
    batcher = await started(redis)
    replies = await asyncio.gather(*(batcher.call("SET", f"k{i}", i) for i in range(50)))
    assert replies == [f"ok {('SET', f'k{i}', i)}" for i in range(50)]
    assert redis.pipelines == [[("SET", f"k{i}", i) for i in range(50)]]
    await batcher.close()


async def test_what_arrives_during_a_round_trip_goes_in_the_next_pipeline_in_order() -> None:
    redis = FakeRedis()
    batcher = await started(redis)
    redis.gate.clear()
    first = asyncio.create_task(batcher.call("A"))
    while not redis.pipelines:
        await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.call(name)) for name in ("B", "C", "D")]
    await asyncio.sleep(0)
    redis.gate.set()
    await asyncio.gather(first, *later)
    assert redis.pipelines == [[("A",)], [("B",), ("C",), ("D",)]]
    await batcher.close()


async def test_an_error_reply_goes_to_its_own_caller_only() -> None:
    batcher = await started(FakeRedis())
    good, bad = await asyncio.gather(
        batcher.call("GET", "x"), batcher.call("BAD"), return_exceptions=True
    )
    assert good == "ok ('GET', 'x')"
    assert isinstance(bad, ResponseError)
    await batcher.close()


async def test_scripts_are_loaded_at_start_and_again_after_noscript() -> None:
    redis = FakeRedis()
    batcher = CommandBatcher(redis)  # type: ignore[arg-type]
    early = batcher.script("return 1")
    await batcher.start()
    assert redis.loaded == {early}
    assert await batcher.evalsha(early, ["k"], [1]) == "ran ('k', 1)"
    redis.loaded.clear()  # as after a Redis restart
    late = batcher.script("return 2")
    replies = await asyncio.gather(
        batcher.evalsha(early, ["a"], []), batcher.call("GET", "b"), batcher.evalsha(late, [], [7])
    )
    assert replies == ["ran ('a',)", "ok ('GET', 'b')", "ran (7,)"]
    assert redis.loaded == {early, late}
    # Only the calls that failed were sent again.
    assert redis.pipelines[-1] == [("EVALSHA", early, 1, "a"), ("EVALSHA", late, 0, 7)]
    await batcher.close()


async def test_a_lost_connection_fails_that_pipeline_s_callers_and_the_batcher_goes_on() -> None:
    redis = FakeRedis()
    batcher = await started(redis)
    redis.down = True
    results = await asyncio.gather(batcher.call("A"), batcher.call("B"), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)
    redis.down = False
    assert await batcher.call("C") == "ok ('C',)"
    await batcher.close()


async def test_when_full_callers_wait_for_room_instead_of_failing() -> None:
    redis = FakeRedis()
    batcher = await started(redis, max_pending=2)
    redis.gate.clear()
    calls = [asyncio.create_task(batcher.call("N", i)) for i in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert sum(map(len, redis.pipelines)) == 2  # the others wait; nothing failed
    assert not any(call.done() for call in calls)
    redis.gate.set()
    assert await asyncio.gather(*calls) == [f"ok {('N', i)}" for i in range(5)]
    assert max(map(len, redis.pipelines)) <= 2
    await batcher.close()


async def test_a_caller_that_gave_up_before_its_pipeline_left_sends_nothing() -> None:
    redis = FakeRedis()
    batcher = await started(redis)
    redis.gate.clear()
    first = asyncio.create_task(batcher.call("A"))
    while not redis.pipelines:
        await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.call("GONE"))
    await asyncio.sleep(0)
    gone.cancel()
    kept = asyncio.create_task(batcher.call("KEPT"))
    await asyncio.sleep(0)
    redis.gate.set()
    await asyncio.gather(first, kept)
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert redis.pipelines == [[("A",)], [("KEPT",)]]
    await batcher.close()


async def test_close_fails_what_was_sent_or_waiting() -> None:
    redis = FakeRedis()
    batcher = await started(redis)
    redis.gate.clear()
    first = asyncio.create_task(batcher.call("A"))
    while not redis.pipelines:
        await asyncio.sleep(0)
    waiting = asyncio.create_task(batcher.call("B"))
    await asyncio.sleep(0)
    await batcher.close()
    for call in (first, waiting):
        with pytest.raises(RedisError, match="shutting down"):
            await call
