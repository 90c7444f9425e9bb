"""Who is live where, read from the Redis state presence-service keeps (see ``justchat.keys``).

``active-channels`` is a sorted set: channel id -> live connection count; presence-service
removes a channel when its last connection leaves. ``{ch:N}:conns`` is a hash: field
``gateway|conn``, value ``first_seen_ms|is_guest(0/1)|username`` (the format lives in
``justchat.members``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis.asyncio as aioredis
from msgspec import Struct

from justchat import members
from justchat.keys import Keys

log = logging.getLogger(__name__)


class LiveMember(Struct, frozen=True, kw_only=True):
    username: str
    is_guest: bool
    first_seen_ms: int


def _live(member: members.Member) -> LiveMember:
    return LiveMember(
        username=member.user.username,
        is_guest=member.user.is_guest,
        first_seen_ms=member.first_seen_ms,
    )


def parse_member(value: bytes | str) -> LiveMember | None:
    """One ``{ch:N}:conns`` value, or None if it is not of the documented form."""
    try:
        return _live(members.parse_member(value))
    except ValueError:
        return None


def distinct_members(values: Iterable[bytes | str]) -> list[LiveMember]:
    """Each user once (however many connections), by first arrival, then by name.

    Malformed values are logged and skipped: one bad entry must not hide a channel's members.
    """
    parsed: list[members.Member] = []
    for value in values:
        try:
            parsed.append(members.parse_member(value))
        except ValueError:
            log.warning("skipping a malformed presence value %r", value)
    return [_live(member) for member in members.distinct(parsed)]


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
