"""Partition leases: every stream partition has exactly one owner among a service's replicas.

A lease is ``SET lease:cmd:{p} <replica> NX PX ttl``, renewed every third of its TTL. Replicas
register themselves with an expiry score, and each keeps at most its fair share
(ceil(partitions / live replicas)) so that a new replica picks up work as the others let go.
A replica that dies simply stops renewing: its leases expire and the others take them over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

OnChange = Callable[[int], Awaitable[None]]


class PartitionLeases:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        lease_key: Callable[[int], str],
        replicas_key: str,
        replica: str,
        partitions: int,
        ttl_ms: int,
        on_acquire: OnChange,
        on_release: OnChange,
    ) -> None:
        self.redis, self.lease_key, self.replicas_key = redis, lease_key, replicas_key
        self.replica = replica
        self.partitions, self.ttl_ms = partitions, ttl_ms
        self.on_acquire, self.on_release = on_acquire, on_release
        self.owned: dict[int, float] = {}  # partition -> monotonic time the lease runs out
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def holds(self, partition: int) -> bool:
        """True while this replica's lease on ``partition`` is certainly still valid."""
        deadline = self.owned.get(partition)
        return deadline is not None and time.monotonic() < deadline

    async def run(self) -> None:
        interval = self.ttl_ms / 3000
        while True:
            try:
                await self._tick()
            except (RedisError, OSError) as exc:
                log.warning("lease round failed: %s", exc)
                for p in [p for p in self.owned if not self.holds(p)]:
                    await self._lose(p)
            await asyncio.sleep(interval)

    async def _tick(self) -> None:
        now_ms = int(time.time() * 1000)
        replicas_key = self.replicas_key
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(replicas_key, {self.replica: now_ms + self.ttl_ms})
            pipe.zremrangebyscore(replicas_key, "-inf", now_ms)
            pipe.zcard(replicas_key)
            *_, live = await pipe.execute()
        fair_share = math.ceil(self.partitions / max(1, int(live)))

        for p in list(self.owned):
            started = time.monotonic()
            if await self._renew(keys=[self.lease_key(p)], args=[self.replica, self.ttl_ms]):
                self.owned[p] = started + self.ttl_ms / 1000
            else:
                log.warning("lost lease on partition %s", p)
                await self._lose(p)
        # Give back what exceeds the fair share, highest partitions first, so others can start.
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - fair_share)]:
            await self.release(p)
        for p in range(self.partitions):
            if len(self.owned) >= fair_share:
                break
            if p in self.owned:
                continue
            started = time.monotonic()
            if await self.redis.set(self.lease_key(p), self.replica, nx=True, px=self.ttl_ms):
                self.owned[p] = started + self.ttl_ms / 1000
                log.info("acquired partition %s", p)
                await self.on_acquire(p)

    async def _lose(self, partition: int) -> None:
        self.owned.pop(partition, None)
        await self.on_release(partition)

    async def release(self, partition: int) -> None:
        await self._lose(partition)
        try:
            await self._release(keys=[self.lease_key(partition)], args=[self.replica])
        except (RedisError, OSError) as exc:
            log.warning("could not release partition %s: %s", partition, exc)

    async def release_all(self) -> None:
        for p in list(self.owned):
            await self.release(p)
        with contextlib.suppress(RedisError, OSError):
            await self.redis.zrem(self.replicas_key, self.replica)
