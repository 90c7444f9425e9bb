"""What every dashboard route shares: the staff guard, id ranges, paging, examples."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Annotated, Final, TypeAlias, TypeVar

from litestar.exceptions import ServiceUnavailableException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter
from redis.exceptions import RedisError

from dashboard_service.guards import (
    BAD_CREDENTIALS,
    FORBIDDEN,
    NOT_AUTHENTICATED,
    require_roles,
)
from dashboard_service.routes._docs import error
from dashboard_service.schemas import UserPublic
from dashboard_service.store import UserRecord
from justchat import wire
from justchat.events import Actor

log = logging.getLogger(__name__)

T = TypeVar("T")

STAFF: Final = require_roles("admin", "moderator")
# Accounts, not guests (who never get a token from /auth/login in the first place).
REGISTERED: Final = require_roles("admin", "moderator", "user")
# The OpenAPI security scheme of bearer tokens (declared in app.py) and its requirement.
BEARER: Final = "bearer"
BEARER_AUTH: Final[list[dict[str, list[str]]]] = [{BEARER: []}]
CHANNEL_NOT_FOUND: Final = "Channel doesn't exist"
PRESENCE_DOWN: Final = "Live presence is unavailable; try again."

# Column ranges: a path id outside them cannot name a row (and asyncpg would refuse to send it).
INT32_MAX: Final = wire.INT32_MAX
INT64_MAX: Final = wire.INT64_MAX
# Every string parameter: PostgreSQL text cannot hold U+0000 (Parameter(pattern=TEXT_PATTERN)).
TEXT_PATTERN: Final = wire.TEXT_PATTERN
_INTEGER: Final = re.compile("-?[0-9]+")  # int() also takes "1_000" and other scripts' digits
TextPath: TypeAlias = Annotated[str, PathParameter(pattern=TEXT_PATTERN)]

EXAMPLE_TIME: Final = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EXAMPLE_USER: Final = UserPublic(
    id=42, username="alice", is_guest=False, created_at=EXAMPLE_TIME, role="user"
)


def staff_errors() -> dict[int, ResponseSpec]:
    """The 401 and 403 every dashboard route can answer."""
    return {
        401: error("No valid bearer token", NOT_AUTHENTICATED, BAD_CREDENTIALS),
        403: error("The caller is neither an admin nor a moderator", FORBIDDEN),
    }


async def from_redis(read: Awaitable[T], detail: str) -> T:
    """``await read``, but 503 with ``detail`` when Redis does not answer."""
    try:
        return await read
    except (RedisError, OSError) as exc:
        log.warning("redis read failed: %r", exc)
        raise ServiceUnavailableException(detail=detail) from exc


def is_user_id(value: int) -> bool:
    return -INT64_MAX - 1 <= value <= INT64_MAX


def is_channel_id(value: int) -> bool:
    return -INT32_MAX - 1 <= value <= INT32_MAX


def parse_integer(text: str) -> int | None:
    """An integer written in ASCII digits with an optional minus sign, else None."""
    return int(text) if _INTEGER.fullmatch(text) else None


def total_pages(total: int, page_size: int) -> int:
    return -(-total // page_size)


def offset_of(page: int, page_size: int) -> int:
    """Rows to skip; a page far beyond the end is merely empty, never an out-of-range error."""
    return clamp_offset((page - 1) * page_size)


def clamp_offset(offset: int) -> int:
    return min(offset, INT64_MAX)


def public(user: UserRecord) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        is_guest=user.is_guest,
        created_at=user.created_at,
        role=user.role,
    )


def actor_of(user: UserRecord) -> Actor:
    """The caller as the author of a command, with its role as stored now."""
    return Actor(user_id=user.id, username=user.username, is_guest=False, role=user.role)
