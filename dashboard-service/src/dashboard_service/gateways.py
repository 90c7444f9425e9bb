"""Which gateway a client should connect to: round robin over the live ones in Redis."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from justchat.keys import Keys


class GatewayDirectory:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def pick(self, now_ms: int | None = None) -> str | None:
        """The WebSocket URL of the next live gateway, or None when none is live.

        Gateways score themselves by heartbeat expiry; a score in the past is a dead gateway that
        presence-service has not removed yet, so it is skipped.
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        members = await self.redis.zrangebyscore(self.keys.gateways, f"({now_ms}", "+inf")
        if not members:
            return None
        # Sorted by id, not score: scores move with every heartbeat, ids do not, so consecutive
        # turns walk the same order.
        live = sorted(_text(member) for member in members)
        urls = await self.redis.hmget(self.keys.gateway_urls, live)
        known = [_text(url) for url in urls if url]
        if not known:
            return None
        turn = await self.redis.incr(self.keys.gateway_rr)
        return choose(known, turn)


def choose(urls: list[str], turn: int) -> str:
    """The URL for ``turn`` (the counter after INCR): each live gateway in turn."""
    return urls[turn % len(urls)]


def _text(value: object) -> str:
    # The client returns bytes (no decode_responses); str would do as well.
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected Redis reply {value!r}")
