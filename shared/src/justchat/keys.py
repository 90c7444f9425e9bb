"""Every Redis key, stream and pub/sub channel name, built here and nowhere else.

All names start with the configured prefix (``JUSTCHAT_REDIS_PREFIX``, default ``jc:``), so
several deployments or test runs can share one Redis. Keys that belong to one chat channel share
the hash tag ``{ch:N}`` so that they land in one slot under Redis Cluster. (In values, ``/`` below
stands for the ``|`` separator.)

| name | type | written by | holds |
|---|---|---|---|
| ``cmd:{p}`` | stream | gateway | commands for partition p (chat-service) |
| ``lease:cmd:{p}`` | string | chat-service | owner of partition p (PX TTL) |
| ``chat-replicas`` | zset | chat-service | live replicas scored by expiry |
| ``dead:cmd`` | stream | chat-service | commands that failed for good |
| ``presence:{p}`` | stream | gateway, presence | join/leave/typing for partition p |
| ``lease:presence:{p}`` | string | presence-service | owner of presence partition p |
| ``presence-replicas`` | zset | presence-service | live replicas scored by expiry |
| ``dead:presence`` | stream | presence-service | presence commands that failed for good |
| ``{ch:N}:events`` | pub/sub | chat, presence | encoded frames for channel N's members |
| ``{ch:N}:recent`` | stream | chat-service | last messages of N (resume window) |
| ``{ch:N}:conns`` | hash | presence-service | connection -> member of channel N |
| ``{ch:N}:mutes`` | hash | chat-service | username -> mute expiry in ms (0: until lifted) |
| ``{ch:N}:typing:{user}`` | string | presence-service | typing marker with a short TTL |
| ``{ch:N}:members-pace`` | hash | presence-service | member-list credit (a token bucket) |
| ``{ch:N}:members-held`` | list | presence-service | join/leave frames held until the window ends |
| ``{ch:N}:members-users`` | set | presence-service | users named by the held frames' last segment |
| ``members-due`` | zset | presence-service | channel id -> when its held window is due (ms) |
| ``gw:{id}:inbox`` | pub/sub | chat-service | frames addressed to one gateway's conns |
| ``reply:{id}`` | list | chat-service | the answer to one REST moderation command (short TTL) |
| ``gw:{id}:conns`` | set | presence-service | ``channel/conn`` pairs (``~/conn`` for online) |
| ``gateways`` | zset | gateway | gateway id scored by heartbeat expiry |
| ``gateway-urls`` | hash | gateway | gateway id -> public WebSocket URL |
| ``gateway-rr`` | string | dashboard | round-robin counter for /gateway |
| ``channels`` | set | chat-service | ids of channels that exist |
| ``active-channels`` | zset | presence-service | channel id -> live connection count |
| ``online-conns`` | hash | presence-service | ``gateway/conn`` -> username of live connections |
| ``online-users`` | hash | presence-service | username -> number of live connections |
| ``rate:{user}`` | hash | gateway | the user's send-rate token bucket |
| ``guest-seq`` | string | gateway, chat | last guest number handed out |
"""

from __future__ import annotations

import zlib
from typing import Final

DEFAULT_PREFIX: Final = "jc:"


class Keys:
    """Key builder bound to one prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    # -- commands and leases ---------------------------------------------------------------
    def cmd_stream(self, partition: int) -> str:
        return f"{self.prefix}cmd:{partition}"

    def lease(self, partition: int) -> str:
        return f"{self.prefix}lease:cmd:{partition}"

    @property
    def chat_replicas(self) -> str:
        return f"{self.prefix}chat-replicas"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}dead:cmd"

    def presence_stream(self, partition: int) -> str:
        return f"{self.prefix}presence:{partition}"

    def presence_lease(self, partition: int) -> str:
        return f"{self.prefix}lease:presence:{partition}"

    @property
    def presence_replicas(self) -> str:
        return f"{self.prefix}presence-replicas"

    @property
    def presence_dead_letters(self) -> str:
        return f"{self.prefix}dead:presence"

    # -- one chat channel --------------------------------------------------------------------
    def channel_topic(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:events"

    def channel_recent(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:recent"

    def channel_conns(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:conns"

    def channel_mutes(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:mutes"

    def send_rate(self, username: str) -> str:
        return f"{self.prefix}rate:{username}"

    def channel_typing(self, channel_id: int, username: str) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:typing:{username}"

    def members_pace(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:members-pace"

    def members_held(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:members-held"

    def members_users(self, channel_id: int) -> str:
        return f"{self.prefix}{{ch:{channel_id}}}:members-users"

    def channel_of_topic(self, topic: str) -> int | None:
        """The channel id of a ``channel_topic`` name, or None for any other name."""
        head = f"{self.prefix}{{ch:"
        if topic.startswith(head) and topic.endswith("}:events"):
            try:
                return int(topic[len(head) : -len("}:events")])
            except ValueError:
                return None
        return None

    # -- replies to REST commands ------------------------------------------------------------
    def moderation_reply(self, request_id: str) -> str:
        """Where chat-service answers the REST moderation command ``request_id``."""
        return f"{self.prefix}reply:{request_id}"

    # -- gateways ----------------------------------------------------------------------------
    def gateway_inbox(self, gateway_id: str) -> str:
        return f"{self.prefix}gw:{gateway_id}:inbox"

    def gateway_conns(self, gateway_id: str) -> str:
        return f"{self.prefix}gw:{gateway_id}:conns"

    @property
    def gateways(self) -> str:
        return f"{self.prefix}gateways"

    @property
    def gateway_urls(self) -> str:
        return f"{self.prefix}gateway-urls"

    @property
    def gateway_rr(self) -> str:
        return f"{self.prefix}gateway-rr"

    # -- global ------------------------------------------------------------------------------
    @property
    def channels(self) -> str:
        return f"{self.prefix}channels"

    @property
    def active_channels(self) -> str:
        return f"{self.prefix}active-channels"

    @property
    def members_due(self) -> str:
        return f"{self.prefix}members-due"

    @property
    def online_conns(self) -> str:
        return f"{self.prefix}online-conns"

    @property
    def online_users(self) -> str:
        return f"{self.prefix}online-users"

    @property
    def guest_seq(self) -> str:
        return f"{self.prefix}guest-seq"


def partition_of(channel_id: int, partitions: int) -> int:
    """The command partition that owns a channel: stable across processes and restarts."""
    return zlib.crc32(str(channel_id).encode()) % partitions


def partition_of_user(username: str, partitions: int) -> int:
    """The partition for commands about a user rather than a channel (guests, online state)."""
    return zlib.crc32(b"user:" + username.encode()) % partitions
