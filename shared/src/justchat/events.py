"""Service <-> service payloads on Redis streams and pub/sub (msgpack): pure data, no I/O.

Streams carry commands (gateway -> chat-service, gateway -> presence-service). Pub/sub carries
``ChannelEvent`` (to every gateway with members in a channel) and ``Direct`` (to one gateway,
for one connection). Frames inside events are already-encoded wire frames: a gateway writes the
same bytes to every recipient and never re-encodes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec
from msgspec import Struct

from justchat.wire import UserFrom


class Actor(Struct, frozen=True, kw_only=True, array_like=True):
    """Who sent a command, as the gateway authenticated it."""

    user_id: int | None  # None for guests: chat-service resolves them by username
    username: str
    is_guest: bool
    role: str

    def user_from(self) -> UserFrom:
        return UserFrom(username=self.username, is_guest=self.is_guest)


class Origin(Struct, frozen=True, kw_only=True, array_like=True):
    """The connection a command came from, for replies addressed to it alone."""

    gateway: str
    conn: str


# -- chat-service commands (stream cmd:{p}) --------------------------------------------------


# Every writer of the command streams (gateways, the dashboard) caps them at this length: a
# safety net only, consumers keep the streams near empty.
COMMAND_STREAM_MAXLEN: Final = 1_000_000


class Command(Struct, frozen=True, kw_only=True, tag_field="k"):
    pass


class SendCmd(Command, frozen=True, kw_only=True, tag="send"):
    msg_id: str  # chosen by the gateway: replays of this command store one row
    channel_id: int
    actor: Actor
    origin: Origin
    content: str
    client_msg_id: str | None = None


class JoinCmd(Command, frozen=True, kw_only=True, tag="join"):
    channel_id: int
    actor: Actor
    origin: Origin
    request_id: str
    since_seq: int | None = None


class GuestCmd(Command, frozen=True, kw_only=True, tag="guest"):
    """Store a guest the gateway named, so that it appears in the dashboard."""

    username: str


class ModerateCmd(Command, frozen=True, kw_only=True, tag="moderate"):
    """kick, mute, unmute, ban or unban ``target`` (a username) in a channel.

    From a gateway, ``origin`` is the moderator's connection (errors go back to it); from the
    REST API it is None and ``request_id`` is set: chat-service pushes a ``ModerateReply`` to
    ``Keys.moderation_reply(request_id)``, where the dashboard waits for it.
    chat-service checks the actor's role in PostgreSQL, writes the sanction and the audit row,
    then broadcasts the frame that makes every gateway enforce it.
    """

    action: str
    channel_id: int
    actor: Actor
    target: str
    duration_s: int | None = None  # mute and ban: None or 0 means until lifted
    reason: str | None = None
    origin: Origin | None = None
    request_id: str | None = None


class SyncCmd(Command, frozen=True, kw_only=True, tag="sync"):
    """A gateway lost its pub/sub connection: send it the channel's messages after ``since_seq``."""

    channel_id: int
    gateway: str
    since_seq: int


class ReactCmd(Command, frozen=True, kw_only=True, tag="react"):
    """Add (``add``) or remove a reaction; idempotent per (message, user, emote)."""

    add: bool
    channel_id: int
    message_id: str
    emote: str
    actor: Actor
    origin: Origin


class HistoryCmd(Command, frozen=True, kw_only=True, tag="history"):
    """A page of a channel's history for one connection (``channel_history``)."""

    channel_id: int
    before_seq: int | None
    limit: int
    origin: Origin


ChatCommand = SendCmd | JoinCmd | GuestCmd | ModerateCmd | SyncCmd | ReactCmd | HistoryCmd

# -- presence-service commands (stream presence) ---------------------------------------------


class PresenceCmd(Struct, frozen=True, kw_only=True, tag_field="k"):
    pass


class PresenceJoin(PresenceCmd, frozen=True, kw_only=True, tag="join"):
    channel_id: int
    origin: Origin
    user: UserFrom


class PresenceLeave(PresenceCmd, frozen=True, kw_only=True, tag="leave"):
    channel_id: int
    origin: Origin


class PresenceTyping(PresenceCmd, frozen=True, kw_only=True, tag="typing"):
    channel_id: int
    user: UserFrom


class PresenceOnline(PresenceCmd, frozen=True, kw_only=True, tag="online"):
    """A connection opened (``online``) or closed: a user is online while any connection lives."""

    origin: Origin
    username: str
    online: bool


AnyPresenceCmd = PresenceJoin | PresenceLeave | PresenceTyping | PresenceOnline

# -- pub/sub ---------------------------------------------------------------------------------


class ChannelEvent(Struct, frozen=True, kw_only=True, array_like=True):
    """One frame for every member of a channel.

    ``seq`` is the message's per-channel sequence number, 0 for unsequenced frames (typing,
    members, join, leave). Gateways drop a sequenced frame whose seq is not above the last one
    they delivered on that channel, which makes republishing after a crash harmless.
    """

    seq: int
    frame: bytes
    remove: str | None = None  # kick and ban: after this frame, gateways drop this user


class Direct(Struct, frozen=True, kw_only=True, array_like=True, tag="direct"):
    """Frames for one connection on one gateway.

    ``request_id`` answers a ``JoinCmd``: ``ok`` says whether the join succeeded and
    ``last_seq`` is the channel's seq up to which ``frames`` (the history) reach.
    """

    conn: str
    frames: list[bytes]
    request_id: str | None = None
    ok: bool = True
    last_seq: int = 0


class CatchUp(Struct, frozen=True, kw_only=True, array_like=True, tag="catchup"):
    """Answers ``SyncCmd``: the channel's events a gateway may have missed, in seq order."""

    channel_id: int
    events: list[ChannelEvent]


InboxEvent = Direct | CatchUp

# -- replies (lists reply:{id}) --------------------------------------------------------------

# applied: done; refused: no permission; no_user: the target is not a user; invalid: bad input.
Outcome = Literal["applied", "refused", "no_user", "invalid"]


class ModerateReply(Struct, frozen=True, kw_only=True, array_like=True):
    """chat-service's answer to a ``ModerateCmd`` that carries a ``request_id``.

    ``detail`` is the refusal's text. A mute or ban that was applied carries the stored row's
    ``created_at`` and ``expires_at`` (None: until lifted), and ``created`` says whether it is
    new rather than a renewal of one that existed.
    """

    outcome: Outcome
    detail: str = ""
    created: bool = False
    created_at: datetime | None = None
    expires_at: datetime | None = None


_encoder: Final = msgspec.msgpack.Encoder()
chat_command_decoder: Final = msgspec.msgpack.Decoder(ChatCommand)
presence_command_decoder: Final = msgspec.msgpack.Decoder(AnyPresenceCmd)
channel_event_decoder: Final = msgspec.msgpack.Decoder(ChannelEvent)
inbox_decoder: Final = msgspec.msgpack.Decoder(InboxEvent)
moderate_reply_decoder: Final = msgspec.msgpack.Decoder(ModerateReply)


def encode(event: Struct) -> bytes:
    return _encoder.encode(event)
