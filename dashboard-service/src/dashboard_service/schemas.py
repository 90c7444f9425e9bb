"""Request and response bodies of the REST API (protocol section 7); pure data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from msgspec import Meta, Struct

# A sanction longer than this is a mistake (0 or null already means "until lifted"), and it keeps
# expiry times far inside PostgreSQL's timestamp range.
MAX_SANCTION_S: Final = 100 * 366 * 24 * 3600
MAX_REASON_CHARS: Final = 500

Role = Literal["admin", "moderator", "user"]
SanctionKind = Literal["mute", "ban"]


def _doc(description: str, example: Any) -> Meta:
    # Litestar reads descriptions and examples for OpenAPI from ``extra_json_schema`` only.
    return Meta(extra_json_schema={"description": description, "examples": [example]})


class SignupRequest(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("3-30 characters once surrounding spaces are removed", "alice")]
    password: Annotated[
        str,
        _doc("8+ characters with an uppercase letter, a lowercase letter and a digit", "Secret123"),
    ]


class LoginForm(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("the account's username", "alice")]
    password: Annotated[str, _doc("the account's password", "Secret123")]


class UserPublic(Struct, frozen=True, kw_only=True):
    id: Annotated[int, _doc("user id", 42)]
    username: Annotated[str, _doc("unique, case-sensitive", "alice")]
    is_guest: Annotated[bool, _doc("true for guests named by a gateway", False)]
    created_at: Annotated[datetime, _doc("UTC, ISO-8601", "2024-05-01T12:00:00.000000Z")]
    role: Annotated[str, _doc("admin, moderator, user or guest", "user")]


class TokenResponse(Struct, frozen=True, kw_only=True):
    access_token: Annotated[
        str,
        _doc(
            "HS256 JWT for the Authorization header and the gateway",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        ),
    ]
    token_type: Annotated[str, _doc("always bearer", "bearer")]
    expires_in: Annotated[int, _doc("seconds until the token expires", 900)]


class GatewayUrl(Struct, frozen=True, kw_only=True):
    url: Annotated[str, _doc("WebSocket URL of a live gateway", "ws://127.0.0.1:8001/ws")]


class ErrorBody(Struct, frozen=True, kw_only=True):
    detail: Annotated[str, _doc("what went wrong, for people", "Username already exists.")]


# -- dashboard: users ----------------------------------------------------------------------------


class UsersPage(Struct, frozen=True, kw_only=True):
    total_users: Annotated[int, _doc("users matching the filters, on every page", 1)]
    total_pages: Annotated[int, _doc("ceil(total_users / page_size); 0 when none match", 1)]
    users: Annotated[list[UserPublic], _doc("this page, sorted by username", [])]


class UserUpdate(Struct, frozen=True, kw_only=True):
    username: Annotated[str | None, _doc("new username; the signup rules apply", "alice2")] = None
    password: Annotated[str | None, _doc("new password; the signup rules apply", "Secret456")] = (
        None
    )
    role: Annotated[
        Role | None, _doc("[ext] new role; admins only, never for guests", "moderator")
    ] = None


class UserMessage(Struct, frozen=True, kw_only=True):
    channel_id: Annotated[int, _doc("channel the message was sent to", 7)]
    sender_username: Annotated[str, _doc("the sender's name when it was sent", "alice")]
    timestamp: Annotated[datetime, _doc("UTC, ISO-8601", "2024-05-01T12:00:00.000000Z")]
    content: Annotated[str, _doc("the message text", "hello")]


class UserMessages(Struct, frozen=True, kw_only=True):
    count: Annotated[int, _doc("all messages of the user, on every page", 1)]
    messages: Annotated[list[UserMessage], _doc("this page, newest first", [])]


# -- dashboard: channels -------------------------------------------------------------------------


class ChannelRef(Struct, frozen=True, kw_only=True):
    id: Annotated[int, _doc("channel id", 7)]


class ActiveChannels(Struct, frozen=True, kw_only=True):
    count: Annotated[int, _doc("channels with a live member", 1)]
    channels: Annotated[list[ChannelRef], _doc("sorted by id", [{"id": 7}])]


class ChannelMember(Struct, frozen=True, kw_only=True):
    id: Annotated[int, _doc("user id", 42)]
    username: Annotated[str, _doc("the member's name", "alice")]
    is_guest: Annotated[bool, _doc("true for guests", False)]


class ChannelMembers(Struct, frozen=True, kw_only=True):
    count: Annotated[int, _doc("live members", 1)]
    users: Annotated[list[ChannelMember], _doc("each user once, in order of arrival", [])]


# -- dashboard: moderation [ext] -----------------------------------------------------------------


class SanctionRequest(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("the user to sanction (must exist)", "mallory")]
    kind: Annotated[SanctionKind, _doc("mute or ban", "mute")]
    duration_s: (
        Annotated[
            int,
            Meta(ge=0, le=MAX_SANCTION_S),
            _doc("seconds; 0 or null means until lifted", 600),
        ]
        | None
    ) = None
    reason: (
        Annotated[str, Meta(max_length=MAX_REASON_CHARS), _doc("shown to the channel", "spam")]
        | None
    ) = None


class Sanction(Struct, frozen=True, kw_only=True):
    channel_id: Annotated[int, _doc("channel id", 7)]
    username: Annotated[str, _doc("the sanctioned user", "mallory")]
    kind: Annotated[SanctionKind, _doc("mute or ban", "mute")]
    reason: Annotated[str | None, _doc("why, if given", "spam")]
    created_by: Annotated[str, _doc("username of the moderator", "admin")]
    created_at: Annotated[datetime, _doc("UTC, ISO-8601", "2024-05-01T12:00:00.000000Z")]
    expires_at: Annotated[
        datetime | None, _doc("UTC, ISO-8601; null means until lifted", "2024-05-01T12:10:00Z")
    ]


class Sanctions(Struct, frozen=True, kw_only=True):
    count: Annotated[int, _doc("active sanctions listed", 1)]
    sanctions: Annotated[list[Sanction], _doc("newest first", [])]


# -- dashboard: audit log [ext] ------------------------------------------------------------------


class AuditEntry(Struct, frozen=True, kw_only=True):
    id: Annotated[int, _doc("entry id, increasing", 1)]
    actor: Annotated[str, _doc("username of whoever acted", "admin")]
    action: Annotated[str, _doc("kick, mute, unmute, ban or unban", "mute")]
    target: Annotated[str, _doc("username acted upon", "mallory")]
    channel_id: Annotated[int | None, _doc("channel id", 7)]
    reason: Annotated[str | None, _doc("why, if given", "spam")]
    expires_at: Annotated[
        datetime | None, _doc("end of a mute or ban; null if none", "2024-05-01T12:10:00Z")
    ]
    created_at: Annotated[datetime, _doc("UTC, ISO-8601", "2024-05-01T12:00:00.000000Z")]


class AuditPage(Struct, frozen=True, kw_only=True):
    total: Annotated[int, _doc("entries matching the filters, on every page", 1)]
    total_pages: Annotated[int, _doc("ceil(total / page_size); 0 when none match", 1)]
    entries: Annotated[list[AuditEntry], _doc("this page, newest first", [])]
