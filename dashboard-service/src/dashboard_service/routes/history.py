"""``/channels/{id}/messages`` [ext]: a channel's history, paged like ``channel_history``.

The WebSocket command answers with a page of a channel's messages; this is the same page for
registered users over HTTP: newest page first, each page oldest first, walked back with
``before_seq`` (protocol section 5).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from dashboard_service.chat_store import ChatStore
from dashboard_service.guards import BAD_CREDENTIALS, FORBIDDEN, NOT_AUTHENTICATED
from dashboard_service.routes._common import (
    BEARER_AUTH,
    CHANNEL_NOT_FOUND,
    EXAMPLE_TIME,
    INT64_MAX,
    REGISTERED,
    is_channel_id,
    parse_integer,
)
from dashboard_service.routes._docs import error, ok
from dashboard_service.rules import InvalidInput
from dashboard_service.schemas import (
    ChannelHistory,
    ChannelMessage,
    MessageSender,
    ReactionSummary,
)
from justchat.wire import MAX_HISTORY_PAGE, utc_timestamp

DEFAULT_LIMIT: Final = 50
BAD_BEFORE_SEQ: Final = "Invalid request: before_seq: Expected an integer >= 0"

_EXAMPLE = ChannelHistory(
    channel_id=7,
    messages=[
        ChannelMessage(
            id="0b7e3f6c-5d0a-4c59-9b0e-2f0f8b6f2a11",
            timestamp=utc_timestamp(EXAMPLE_TIME),
            channel_id=7,
            sender=MessageSender(username="alice", is_guest=False),
            content="hello",
            seq=12,
            client_msg_id="c-17",
            reactions=[ReactionSummary(emote="+1", count=2, users=["bob", "carol"])],
        ),
        ChannelMessage(
            id="5c1d9a2e-8f43-4e7b-a0d6-3b9e7c2f1d40",
            timestamp=utc_timestamp(EXAMPLE_TIME + timedelta(seconds=5)),
            channel_id=7,
            sender=MessageSender(username="Guest1234", is_guest=True),
            content="hi alice",
            seq=13,
            reactions=[],
        ),
    ],
    has_more=True,
    next_before_seq=12,
)


def _before_seq(raw: str) -> int | None:
    """The ``before_seq`` query value: empty for the newest page (clients send ``before_seq=``).

    Values beyond any seq PostgreSQL can hold mean the same as no bound at all.
    """
    text = raw.strip()
    if not text:
        return None
    value = parse_integer(text)
    if value is None or value < 0:
        raise InvalidInput(BAD_BEFORE_SEQ)
    return min(value, INT64_MAX)


@get(
    "/channels/{channel_id:int}/messages",
    tags=["channels"],
    guards=[REGISTERED],
    security=BEARER_AUTH,
    summary="A page of a channel's messages",
    description="[ext] The WebSocket `channel_history` over HTTP, for registered users: up to"
    " `limit` messages with `seq` below `before_seq` (the newest ones without it), oldest first,"
    " each with its reactions. Page back by passing `next_before_seq` as `before_seq` while"
    " `has_more` is true.",
    responses={
        200: ok("One page of messages, oldest first", _EXAMPLE),
        401: error("No valid bearer token", NOT_AUTHENTICATED, BAD_CREDENTIALS),
        403: error("The caller is a guest", FORBIDDEN),
        404: error("No channel has this id", CHANNEL_NOT_FOUND),
        422: error(
            "A query parameter does not validate",
            f"Invalid request: limit: Expected `int` <= {MAX_HISTORY_PAGE}",
            BAD_BEFORE_SEQ,
        ),
    },
)
async def channel_messages(
    channel_id: FromPath[int],
    chat: NamedDependency[ChatStore],
    before_seq: Annotated[
        str,
        QueryParameter(
            description="only messages with a lower seq; empty or absent for the newest page"
        ),
    ] = "",
    limit: Annotated[
        int,
        QueryParameter(
            ge=1, le=MAX_HISTORY_PAGE, description=f"messages per page, 1-{MAX_HISTORY_PAGE}"
        ),
    ] = DEFAULT_LIMIT,
) -> ChannelHistory:
    bound = _before_seq(before_seq)
    page = await chat.history_page(channel_id, bound, limit) if is_channel_id(channel_id) else None
    if page is None:
        raise NotFoundException(detail=CHANNEL_NOT_FOUND)
    return ChannelHistory(
        channel_id=channel_id,
        messages=page.messages,
        has_more=page.has_more,
        next_before_seq=page.messages[0].seq if page.has_more and page.messages else None,
    )
