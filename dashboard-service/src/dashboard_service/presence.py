"""Who is live where, read from the Redis state presence-service keeps (see ``justchat.keys``).

``active-channels`` is a sorted set: channel id -> live connection count; presence-service
removes a channel when its last connection leaves. ``{ch:N}:conns`` is a hash: field
``gateway|conn``, value ``first_seen_ms|is_guest(0/1)|username``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from msgspec import Struct

from justchat.keys import Keys

log = logging.getLogger(__name__)


class LiveMember(Struct, frozen=True, kw_only=True):
    username: str
    is_guest: bool
    first_seen_ms: int


def parse_member(value: bytes | str) -> LiveMember | None:
    """One ``{ch:N}:conns`` value, or None if it is not of the documented form."""
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    seen, _, rest = text.partition("|")
    guest, _, username = rest.partition("|")
    if not seen.isdecimal() or guest not in ("0", "1") or not username:
        return None
    return LiveMember(username=username, is_guest=guest == "1", first_seen_ms=int(seen))


def distinct_members(values: Iterable[bytes | str]) -> list[LiveMember]:
    """Each user once (however many connections), by first arrival, then by name."""
    first: dict[str, LiveMember] = {}
    for value in values:
        member = parse_member(value)
        if member is None:
            log.warning("skipping a malformed presence value %r", value)
            continue
        known = first.get(member.username)
        if known is None or member.first_seen_ms < known.first_seen_ms:
            first[member.username] = member
    return sorted(first.values(), key=lambda m: (m.first_seen_ms, m.username))


class LivePresence:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def active_channels(self) -> list[int]:
        """Ids of channels with at least one live connection on any gateway, ascending."""
        found = await self.redis.zrangebyscore(self.keys.active_channels, "(0", "+inf")
        ids = []
        for member in found:
            text = member.decode() if isinstance(member, bytes) else str(member)
            try:
                ids.append(int(text))
            except ValueError:
                log.warning("skipping a malformed active channel %r", member)
        return sorted(ids)

    async def members(self, channel_id: int) -> list[LiveMember]:
        values = await self.redis.hvals(self.keys.channel_conns(channel_id))
        return distinct_members(values)
