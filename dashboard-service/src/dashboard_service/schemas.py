"""Request and response bodies of the REST API (protocol section 7); pure data."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from msgspec import Meta, Struct

from justchat import wire

# The WebSocket's limits, which match what storage holds: chat-service binds a sanction's seconds
# as int4 (about 68 years; 0 or null already means "until lifted").
MAX_SANCTION_S: Final = wire.MAX_SANCTION_S
MAX_REASON_CHARS: Final = wire.MAX_REASON_CHARS
# Every string of a request: PostgreSQL text cannot hold U+0000 (a 422, not a failed query).
TEXT: Final = Meta(pattern=wire.TEXT_PATTERN)

Role = Literal["admin", "moderator", "user"]
SanctionKind = Literal["mute", "ban"]


def _doc(description: str, example: Any) -> Meta:
    # Litestar reads descriptions and examples for OpenAPI from ``extra_json_schema`` only.
    return Meta(extra_json_schema={"description": description, "examples": [example]})


class SignupRequest(Struct, frozen=True, kw_only=True):
    # Usernames: the signup rules refuse control characters (U+0000 too) with a clearer text.
    username: Annotated[str, _doc("3-30 characters once surrounding spaces are removed", "alice")]
    password: Annotated[
        str,
        TEXT,
        _doc("8+ characters with an uppercase letter, a lowercase letter and a digit", "Secret123"),
    ]


class LoginForm(Struct, frozen=True, kw_only=True):
    username: Annotated[str, TEXT, _doc("the account's username", "alice")]
    password: Annotated[str, TEXT, _doc("the account's password", "Secret123")]


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
    password: (
        Annotated[str, TEXT, _doc("new password; the signup rules apply", "Secret456")] | None
    ) = None
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
    username: Annotated[
        str,
        Meta(max_length=wire.MAX_NAME_CHARS),
        TEXT,
        _doc("the user to sanction (must exist)", "mallory"),
    ]
    kind: Annotated[SanctionKind, _doc("mute or ban", "mute")]
    duration_s: (
        Annotated[
            int,
            Meta(ge=0, le=MAX_SANCTION_S),
            _doc(f"seconds, 0 to {MAX_SANCTION_S}; 0 or null means until lifted", 600),
        ]
        | None
    ) = None
    reason: (
        Annotated[
            str, Meta(max_length=MAX_REASON_CHARS), TEXT, _doc("shown to the channel", "spam")
        ]
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


# -- channel history [ext] -----------------------------------------------------------------------


class ReactionSummary(Struct, frozen=True, kw_only=True):
    emote: Annotated[str, _doc("the emote", "+1")]
    count: Annotated[int, _doc("users who reacted with it", 2)]
    users: Annotated[list[str], _doc("who, in order of reaction, then by name", ["bob", "carol"])]


class MessageSender(Struct, frozen=True, kw_only=True):
    username: Annotated[str, _doc("the sender's name when it was sent", "alice")]
    is_guest: Annotated[bool, _doc("true for guests", False)]


class ChannelMessage(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A message as the WebSocket ``channel_history`` frame carries it."""

    id: Annotated[str, _doc("message id (UUID)", "0b7e3f6c-5d0a-4c59-9b0e-2f0f8b6f2a11")]
    timestamp: Annotated[
        str, _doc("when it was stored: UTC, ISO-8601, microseconds", "2024-05-01T12:00:05.000000Z")
    ]
    channel_id: Annotated[int, _doc("channel id", 7)]
    sender: MessageSender
    content: Annotated[str, _doc("the message text", "hello")]
    seq: Annotated[int, _doc("position in the channel: from 1, gap-free", 12)]
    client_msg_id: Annotated[
        str | None, _doc("the sender's idempotency key; absent if none was sent", "c-17")
    ] = None
    reactions: Annotated[list[ReactionSummary], _doc("by first reaction, then emote", [])]


class ChannelHistory(Struct, frozen=True, kw_only=True):
    channel_id: Annotated[int, _doc("channel id", 7)]
    messages: Annotated[list[ChannelMessage], _doc("this page, oldest first", [])]
    has_more: Annotated[bool, _doc("whether older messages exist", True)]
    next_before_seq: Annotated[
        int | None, _doc("`before_seq` for the next older page; null when there is none", 12)
    ]


# -- dashboard: dead letters [ext] ---------------------------------------------------------------


class DeadLetter(Struct, frozen=True, kw_only=True):
    id: Annotated[str, _doc("the dead-letter stream entry id", "1714564800000-0")]
    source_stream: Annotated[str, _doc("the stream the command came from", "jc:cmd:3")]
    entry: Annotated[str, _doc("its entry id in that stream", "1714564799000-0")]
    command: Annotated[
        dict[str, Any] | None,
        _doc("the decoded command; null if it does not decode", {"k": "send", "channel_id": 7}),
    ]
    error: Annotated[str, _doc("why it failed for good", "ValueError('bad data')")]


class DeadLetters(Struct, frozen=True, kw_only=True):
    count: Annotated[int, _doc("entries listed", 1)]
    entries: Annotated[list[DeadLetter], _doc("newest first", [])]


class DeadLetterCounts(Struct, frozen=True, kw_only=True):
    cmd: Annotated[int, _doc("entries in the chat command dead-letter stream", 3)]
    presence: Annotated[int, _doc("entries in the presence dead-letter stream", 0)]
