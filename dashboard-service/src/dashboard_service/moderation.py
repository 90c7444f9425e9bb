"""Moderation over REST: hand the command to chat-service, then wait for its answer.

The dashboard never writes a sanction itself. chat-service owns moderation (it checks the
actor's role, writes the sanction and the audit row, then tells every gateway to enforce it), so
a REST request becomes the same ``ModerateCmd`` a gateway would send, on the channel's command
stream, with a ``request_id``. chat-service answers on the list ``reply:{request_id}``, which
the dashboard waits on with BLPOP: a list keeps an answer that arrives before the wait begins,
and any dashboard replica may send while any chat-service replica answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Final, cast

import msgspec
import redis.asyncio as aioredis
from msgspec import Struct

from dashboard_service.schemas import Sanction
from justchat import events
from justchat.errors import JustchatError
from justchat.events import Actor, ModerateCmd, ModerateReply
from justchat.keys import Keys, partition_of

DEFAULT_WAIT_S: Final = 5.0
MIN_WAIT_S: Final = 0.1
# Each wait holds a pooled Redis connection for up to the wait: bound them, so that a stalled
# chat-service cannot take every connection the rest of the dashboard needs.
MAX_WAITING: Final = 16
LIFT: Final = {"mute": "unmute", "ban": "unban"}


class NoAnswer(JustchatError):
    """chat-service did not answer in time; the command stays queued and may still apply."""


class Busy(JustchatError):
    """Too many requests wait for chat-service already; this one was not sent."""


class Refused(JustchatError):
    """chat-service refused the command (permission); the message is its text."""


class UnknownTarget(JustchatError):
    """chat-service found no user of that name."""


class Invalid(JustchatError):
    """chat-service found the command invalid; the message says why."""


class Imposed(Struct, frozen=True, kw_only=True):
    """A mute or ban as chat-service stored it; ``created`` is False for a renewal."""

    sanction: Sanction
    created: bool


_REFUSALS: Final[dict[str, type[JustchatError]]] = {
    "refused": Refused,
    "no_user": UnknownTarget,
    "invalid": Invalid,
}


class Moderator:
    """Sends ``ModerateCmd``s for REST callers and waits for chat-service's answer.

    Args:
        redis: client for the command streams and the reply lists.
        keys: key names of this deployment.
        partitions: number of command partitions (``Settings.partitions``).
        wait_s: how long a request waits for the answer before ``NoAnswer``; below the Redis
            client's socket timeout (``justchat.service.redis_client``: 10 s).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        partitions: int,
        *,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        self.redis, self.keys, self.partitions, self.wait_s = redis, keys, partitions, wait_s
        self._waiting = asyncio.Semaphore(MAX_WAITING)

    async def impose(
        self,
        actor: Actor,
        channel_id: int,
        username: str,
        kind: str,
        *,
        duration_s: int | None,
        reason: str | None,
    ) -> Imposed:
        """Mute or ban; the sanction as chat-service stored it.

        Raises ``Refused``, ``UnknownTarget``, ``Invalid`` or ``NoAnswer``.
        """
        command = ModerateCmd(
            action=kind,
            channel_id=channel_id,
            actor=actor,
            target=username,
            duration_s=duration_s,
            reason=reason,
        )
        reply = await self._ask(command)
        if reply.created_at is None:
            raise JustchatError(f"chat-service applied {kind} but sent no stored row")
        sanction = Sanction(
            channel_id=channel_id,
            username=username,
            kind="mute" if kind == "mute" else "ban",
            reason=reason,
            created_by=actor.username,
            created_at=reply.created_at,
            expires_at=reply.expires_at,
        )
        return Imposed(sanction=sanction, created=reply.created)

    async def lift(self, actor: Actor, channel_id: int, username: str, kind: str) -> None:
        """Unmute or unban (there may be nothing to lift).

        Raises ``Refused``, ``UnknownTarget``, ``Invalid`` or ``NoAnswer``.
        """
        await self._ask(
            ModerateCmd(action=LIFT[kind], channel_id=channel_id, actor=actor, target=username)
        )

    async def _ask(self, command: ModerateCmd) -> ModerateReply:
        """Send ``command`` with a fresh request id; chat-service's answer when it applied it."""
        request_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        async with self._slot():
            # Exactly as a gateway sends it: one field ``c`` holding the encoded command.
            stream = self.keys.cmd_stream(partition_of(command.channel_id, self.partitions))
            await self.redis.xadd(
                stream,
                {"c": events.encode(msgspec.structs.replace(command, request_id=request_id))},
                maxlen=events.COMMAND_STREAM_MAXLEN,
                approximate=True,
            )
            # BLPOP's timeout 0 would mean forever: wait at least a moment.
            remaining = max(deadline - loop.time(), MIN_WAIT_S)
            popped = await self.redis.blpop(
                [self.keys.moderation_reply(request_id)], timeout=remaining
            )
        if popped is None:
            raise NoAnswer(f"no answer to {command.action} of {command.target!r} in time")
        _, raw = cast(tuple[bytes, bytes], popped)
        reply = events.moderate_reply_decoder.decode(raw)
        refusal = _REFUSALS.get(reply.outcome)
        if refusal is not None:
            raise refusal(reply.detail)
        return reply

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.wait_s):
                await self._waiting.acquire()
        except TimeoutError:
            raise Busy(f"{MAX_WAITING} moderation requests are waiting already") from None
        try:
            yield
        finally:
            self._waiting.release()
