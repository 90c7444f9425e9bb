"""``/dashboard/channels/{id}/sanctions`` [ext]: list, impose and lift mutes and bans.

Imposing and lifting go through chat-service (see ``dashboard_service.moderation``): the answer
is 201/204 once the effect is visible, or 202 if chat-service has not applied it in time.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Final, Literal

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ServiceUnavailableException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from redis.exceptions import RedisError

from dashboard_service.chat_store import ChatStore
from dashboard_service.guards import USER_NOT_FOUND
from dashboard_service.moderation import NOT_APPLIED, Moderator
from dashboard_service.routes._common import (
    BEARER_AUTH,
    CHANNEL_NOT_FOUND,
    EXAMPLE_TIME,
    STAFF,
    TextPath,
    actor_of,
    is_channel_id,
    staff_errors,
)
from dashboard_service.routes._docs import error, ok
from dashboard_service.schemas import Sanction, SanctionKind, SanctionRequest, Sanctions
from dashboard_service.store import UserRecord, UserStore

log = logging.getLogger(__name__)

MODERATION_DOWN: Final = "Moderation is unavailable; try again."

_EXAMPLE = Sanction(
    channel_id=7,
    username="mallory",
    kind="mute",
    reason="spam",
    created_by="admin",
    created_at=EXAMPLE_TIME,
    expires_at=EXAMPLE_TIME + timedelta(minutes=10),
)
_ACCEPTED = error("chat-service has the command but has not applied it yet", NOT_APPLIED)
_NOT_FOUND = error("The channel or the user does not exist", CHANNEL_NOT_FOUND, USER_NOT_FOUND)
_DOWN = error("Redis does not answer", MODERATION_DOWN)


async def _check_channel(chat: ChatStore, channel_id: int) -> None:
    if not is_channel_id(channel_id) or not await chat.channel_exists(channel_id):
        raise NotFoundException(detail=CHANNEL_NOT_FOUND)


async def _check_user(users: UserStore, username: str) -> None:
    if await users.by_username(username) is None:
        raise NotFoundException(detail=USER_NOT_FOUND)


def _unavailable(exc: Exception) -> ServiceUnavailableException:
    log.warning("moderation command not sent: %r", exc)
    return ServiceUnavailableException(detail=MODERATION_DOWN)


class SanctionsController(Controller):
    path = "/dashboard/channels/{channel_id:int}/sanctions"
    tags = ["dashboard: moderation"]
    guards = [STAFF]
    security = BEARER_AUTH

    @get(
        "/",
        summary="Active mutes and bans of a channel",
        description="[ext] Sanctions that have not expired, newest first; `kind` keeps one kind.",
        responses={
            200: ok("The active sanctions", Sanctions(count=1, sanctions=[_EXAMPLE])),
            **staff_errors(),
            404: error("No channel has this id", CHANNEL_NOT_FOUND),
            422: error("Unknown kind", "Invalid request: kind: Invalid enum value 'kick'"),
        },
    )
    async def list_sanctions(
        self,
        channel_id: FromPath[int],
        chat: NamedDependency[ChatStore],
        kind: Annotated[
            Literal["", "mute", "ban"], QueryParameter(description="mute or ban; empty for both")
        ] = "",
    ) -> Sanctions:
        await _check_channel(chat, channel_id)
        found = await chat.active_sanctions(channel_id, kind or None)
        return Sanctions(count=len(found), sanctions=found)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Mute or ban a user in a channel",
        description="[ext] Sent to chat-service as the caller's command, exactly like a"
        " moderator's `chat_mute` or `chat_ban` over the WebSocket: it checks permissions,"
        " stores the sanction and the audit entry, and tells the channel. `duration_s` 0 or"
        " null means until lifted. Answers 201 with the sanction once it is stored, 202 if"
        " that takes longer than a few seconds.",
        responses={
            201: ok("The sanction as stored", _EXAMPLE),
            202: _ACCEPTED,
            **staff_errors(),
            404: _NOT_FOUND,
            422: error(
                "The body does not validate",
                "Invalid request: duration_s: Expected `int` >= 0",
            ),
            503: _DOWN,
        },
    )
    async def impose(
        self,
        channel_id: FromPath[int],
        data: JSONBody[SanctionRequest],
        chat: NamedDependency[ChatStore],
        users: NamedDependency[UserStore],
        moderator: NamedDependency[Moderator],
        current_user: NamedDependency[UserRecord],
    ) -> Sanction:
        await _check_channel(chat, channel_id)
        await _check_user(users, data.username)
        try:
            return await moderator.impose(
                actor_of(current_user),
                channel_id,
                data.username,
                data.kind,
                duration_s=data.duration_s,
                reason=data.reason,
            )
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    @delete(
        "/{kind:str}/{username:path}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Lift a mute or ban",
        description="[ext] Sent to chat-service as the caller's `chat_unmute` or `chat_unban`."
        " Answers 204 once no such sanction is stored (also when there was none), 202 if"
        " that takes longer than a few seconds.",
        responses={
            202: _ACCEPTED,
            **staff_errors(),
            404: _NOT_FOUND,
            422: error("Unknown kind", "Invalid request: kind: Invalid enum value 'kick'"),
            503: _DOWN,
        },
    )
    async def lift(
        self,
        channel_id: FromPath[int],
        kind: FromPath[SanctionKind],
        username: TextPath,
        chat: NamedDependency[ChatStore],
        users: NamedDependency[UserStore],
        moderator: NamedDependency[Moderator],
        current_user: NamedDependency[UserRecord],
    ) -> None:
        # A ``path`` parameter keeps its leading slash; what follows it is the username, which
        # may itself contain slashes.
        username = username.removeprefix("/")
        await _check_channel(chat, channel_id)
        await _check_user(users, username)
        try:
            await moderator.lift(actor_of(current_user), channel_id, username, kind)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
