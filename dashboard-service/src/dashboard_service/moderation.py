"""Moderation over REST: hand the command to chat-service, then wait for its effect.

The dashboard never writes a sanction itself. chat-service owns moderation (it checks the
actor's role, writes the sanction and the audit row, then tells every gateway to enforce it), so
a REST request becomes the same ``ModerateCmd`` a gateway would send, on the channel's command
stream. The answer waits, briefly, until PostgreSQL shows the effect.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import redis.asyncio as aioredis

from dashboard_service.chat_store import ChatStore
from dashboard_service.schemas import Sanction
from justchat import events
from justchat.errors import JustchatError
from justchat.events import Actor, ModerateCmd
from justchat.keys import Keys, partition_of

NOT_APPLIED: Final = "Accepted; not applied yet."
DEFAULT_WAIT_S: Final = 5.0
DEFAULT_POLL_S: Final = 0.05
# The gateway's cap for the same streams: a safety net, consumers keep them near empty.
STREAM_MAXLEN: Final = 1_000_000
LIFT: Final = {"mute": "unmute", "ban": "unban"}

T = TypeVar("T")


class NotAppliedYet(JustchatError):
    """The command is on the stream but its effect did not show within the wait."""


class Moderator:
    """Sends ``ModerateCmd``s for REST callers and waits for chat-service to apply them.

    Args:
        redis: client for the command streams.
        keys: key names of this deployment.
        partitions: number of command partitions (``Settings.partitions``).
        chat: where the effects become visible.
        wait_s: how long a request waits for the effect before answering 202.
        poll_s: how often PostgreSQL is asked meanwhile.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        partitions: int,
        chat: ChatStore,
        *,
        wait_s: float = DEFAULT_WAIT_S,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.redis, self.keys, self.partitions, self.chat = redis, keys, partitions, chat
        self.wait_s, self.poll_s = wait_s, poll_s

    async def impose(
        self,
        actor: Actor,
        channel_id: int,
        username: str,
        kind: str,
        *,
        duration_s: int | None,
        reason: str | None,
    ) -> Sanction:
        """Mute or ban; the sanction as chat-service stored it, or ``NotAppliedYet``."""
        since = await self.chat.now()
        await self._send(
            ModerateCmd(
                action=kind,
                channel_id=channel_id,
                actor=actor,
                target=username,
                duration_s=duration_s,
                reason=reason,
            )
        )
        # A row written before ``since`` is an older sanction that chat-service has not replaced.
        return await self._wait(lambda: self.chat.sanction_since(channel_id, username, kind, since))

    async def lift(self, actor: Actor, channel_id: int, username: str, kind: str) -> None:
        """Unmute or unban; returns once the sanction is gone, else ``NotAppliedYet``."""
        await self._send(
            ModerateCmd(action=LIFT[kind], channel_id=channel_id, actor=actor, target=username)
        )

        async def gone() -> bool | None:
            return True if not await self.chat.has_sanction(channel_id, username, kind) else None

        await self._wait(gone)

    async def _send(self, command: ModerateCmd) -> None:
        # Exactly as a gateway sends it: one field ``c`` holding the encoded command.
        stream = self.keys.cmd_stream(partition_of(command.channel_id, self.partitions))
        await self.redis.xadd(
            stream, {"c": events.encode(command)}, maxlen=STREAM_MAXLEN, approximate=True
        )

    async def _wait(self, probe: Callable[[], Awaitable[T | None]]) -> T:
        deadline = time.monotonic() + self.wait_s
        while True:
            found = await probe()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotAppliedYet
            await asyncio.sleep(min(self.poll_s, remaining))
