"""``/dashboard/audit`` [ext]: the moderation audit log, filtered and paged."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final, Literal

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from dashboard_service.audit_store import AuditFilter, AuditStore
from dashboard_service.routes._common import (
    BEARER_AUTH,
    EXAMPLE_TIME,
    STAFF,
    TEXT_PATTERN,
    is_channel_id,
    offset_of,
    parse_integer,
    staff_errors,
    total_pages,
)
from dashboard_service.routes._docs import error, ok
from dashboard_service.rules import InvalidInput
from dashboard_service.schemas import AuditEntry, AuditPage
from justchat import wire

MAX_PAGE_SIZE: Final = 100
BAD_CHANNEL_ID: Final = "Invalid request: channel_id: Expected a 32-bit integer"

_EXAMPLE = AuditEntry(
    id=1,
    actor="admin",
    action="mute",
    target="mallory",
    channel_id=7,
    reason="spam",
    expires_at=EXAMPLE_TIME + timedelta(minutes=10),
    created_at=EXAMPLE_TIME,
)

Action = Literal["", "kick", "mute", "unmute", "ban", "unban"]


def _name_filter(description: str) -> QueryParameter:
    return QueryParameter(
        max_length=wire.MAX_NAME_CHARS, pattern=TEXT_PATTERN, description=description
    )


def _channel_filter(raw: str) -> int | None:
    """The ``channel_id`` query value: empty for any channel (clients send ``channel_id=``)."""
    text = raw.strip()
    if not text:
        return None
    value = parse_integer(text)
    if value is None or not is_channel_id(value):
        raise InvalidInput(BAD_CHANNEL_ID)
    return value


@get(
    "/dashboard/audit",
    tags=["dashboard: moderation"],
    guards=[STAFF],
    security=BEARER_AUTH,
    summary="The moderation audit log",
    description="[ext] Every kick, mute, unmute, ban and unban, from the WebSocket or this API,"
    " newest first. Filters are exact (usernames are case-sensitive), empty ones are ignored,"
    " and all given ones must hold.",
    responses={
        200: ok("One page of entries", AuditPage(total=1, total_pages=1, entries=[_EXAMPLE])),
        **staff_errors(),
        422: error(
            "A query parameter does not validate",
            "Invalid request: action: Invalid enum value 'warn'",
            BAD_CHANNEL_ID,
        ),
    },
)
async def audit_log(
    audit: NamedDependency[AuditStore],
    page: Annotated[int, QueryParameter(ge=1, description="1-based page number")] = 1,
    page_size: Annotated[
        int,
        QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"entries per page, 1-{MAX_PAGE_SIZE}"),
    ] = 20,
    actor: Annotated[str, _name_filter("username of whoever acted")] = "",
    target: Annotated[str, _name_filter("username acted upon")] = "",
    action: Annotated[Action, QueryParameter(description="kick, mute, unmute, ban or unban")] = "",
    channel_id: Annotated[str, QueryParameter(description="a channel id")] = "",
) -> AuditPage:
    where = AuditFilter(
        actor=actor or None,
        target=target or None,
        action=action or None,
        channel_id=_channel_filter(channel_id),
    )
    total, entries = await audit.page(where, limit=page_size, offset=offset_of(page, page_size))
    return AuditPage(total=total, total_pages=total_pages(total, page_size), entries=entries)
