"""``/dashboard/channels/{id}/sanctions`` [ext]: list, impose and lift mutes and bans.

Imposing and lifting go through chat-service (see ``dashboard_service.moderation``), which
answers each command: the route answers with what happened (201 or 200 with the sanction, 204
for a lift, 403, 404 or 422 with chat-service's reason), or 503 when it does not answer in time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated, Final, Literal, TypeVar

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
)
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_204_NO_CONTENT,
    HTTP_422_UNPROCESSABLE_ENTITY,
)
from redis.exceptions import RedisError

from dashboard_service.chat_store import ChatStore
from dashboard_service.errors import TEXT_REFUSED
from dashboard_service.guards import FORBIDDEN, USER_NOT_FOUND
from dashboard_service.moderation import (
    Busy,
    Invalid,
    Moderator,
    NoAnswer,
    Refused,
    UnknownTarget,
)
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
from justchat import wire
from justchat.wire import MAX_SANCTION_S

log = logging.getLogger(__name__)

T = TypeVar("T")

MODERATION_DOWN: Final = "Moderation is unavailable; try again."
NO_ANSWER: Final = "chat-service did not answer in time; the command may still take effect."

_EXAMPLE = Sanction(
    channel_id=7,
    username="mallory",
    kind="mute",
    reason="spam",
    created_by="admin",
    created_at=EXAMPLE_TIME,
    expires_at=EXAMPLE_TIME + timedelta(minutes=10),
)
_FORBIDDEN = error(
    "The caller is neither an admin nor a moderator, or chat-service refused the command"
    " (a moderator acting on an admin)",
    FORBIDDEN,
    wire.ERR_NO_PERMISSION,
)
_NOT_FOUND = error("The channel or the user does not exist", CHANNEL_NOT_FOUND, USER_NOT_FOUND)
_DOWN = error(
    "chat-service did not answer in time (the command stays queued and may still take"
    " effect), or Redis does not answer",
    NO_ANSWER,
    MODERATION_DOWN,
)


async def _check_channel(chat: ChatStore, channel_id: int) -> None:
    if not is_channel_id(channel_id) or not await chat.channel_exists(channel_id):
        raise NotFoundException(detail=CHANNEL_NOT_FOUND)


async def _check_user(users: UserStore, username: str) -> None:
    if await users.by_username(username) is None:
        raise NotFoundException(detail=USER_NOT_FOUND)


async def _answer(command: Awaitable[T]) -> T:
    """chat-service's answer to ``command``, its refusals as HTTP errors."""
    try:
        return await command
    except Refused as exc:
        raise PermissionDeniedException(detail=str(exc)) from exc
    except UnknownTarget as exc:
        raise NotFoundException(detail=USER_NOT_FOUND) from exc
    except Invalid as exc:
        detail = f"Invalid request: {exc}"
        raise HTTPException(status_code=HTTP_422_UNPROCESSABLE_ENTITY, detail=detail) from exc
    except NoAnswer as exc:
        log.warning("moderation: %s", exc)
        raise ServiceUnavailableException(detail=NO_ANSWER) from exc
    except (Busy, RedisError, OSError) as exc:
        log.warning("moderation command not sent: %r", exc)
        raise ServiceUnavailableException(detail=MODERATION_DOWN) from exc


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
        " stores the sanction and the audit entry, tells the channel, and answers. `duration_s`"
        f" 0 or null means until lifted; at most {MAX_SANCTION_S} (about 68 years). Answers 201"
        " with the new sanction, 200 with the renewed one when the user had one of this kind"
        " already, 403 with chat-service's refusal (a moderator may not sanction an admin), or"
        " 503 when chat-service does not answer within a few seconds (the command stays queued"
        " and may still take effect).",
        responses={
            201: ok("The new sanction, as stored", _EXAMPLE),
            200: ok("The renewed sanction, as stored (it replaced one of this kind)", _EXAMPLE),
            **staff_errors(),
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            422: error(
                "The body does not validate",
                "Invalid request: duration_s: Expected `int` >= 0",
                f"Invalid request: duration_s: Expected `int` <= {MAX_SANCTION_S}",
                f"Invalid request: reason: {TEXT_REFUSED}",
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
    ) -> Response[Sanction]:
        await _check_channel(chat, channel_id)
        await _check_user(users, data.username)
        imposed = await _answer(
            moderator.impose(
                actor_of(current_user),
                channel_id,
                data.username,
                data.kind,
                duration_s=data.duration_s,
                reason=data.reason,
            )
        )
        status = HTTP_201_CREATED if imposed.created else HTTP_200_OK
        return Response(imposed.sanction, status_code=status)

    @delete(
        "/{kind:str}/{username:path}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Lift a mute or ban",
        description="[ext] Sent to chat-service as the caller's `chat_unmute` or `chat_unban`."
        " Answers 204 once chat-service has lifted it (also when there was none), 403 with its"
        " refusal (a moderator may not lift an admin's sanction), or 503 when it does not answer"
        " within a few seconds (the command stays queued and may still take effect).",
        responses={
            **staff_errors(),
            403: _FORBIDDEN,
            404: _NOT_FOUND,
            422: error(
                "Unknown kind, or a NUL in the username",
                "Invalid request: kind: Invalid enum value 'kick'",
                f"Invalid request: username: {TEXT_REFUSED}",
            ),
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
        await _answer(moderator.lift(actor_of(current_user), channel_id, username, kind))
