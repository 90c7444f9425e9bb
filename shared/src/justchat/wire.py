"""The browser <-> gateway protocol (PROTOCOL.md v1): pure data, no I/O.

Client frames are decoded in two steps: the envelope first (so an unknown ``type`` and a bad
payload get different errors), then the payload with the decoder built for that type. Server
frames are a tagged union on ``type``; their encoder writes ``type, timestamp, id, payload`` in
that order, which is what the original server sent.

Extension fields ([ext] in PROTOCOL.md) default to ``UNSET`` so that msgspec leaves them out of
the frame entirely: the original client never sees a key it does not know.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from justchat.errors import ProtocolError

# -- limits and error texts ------------------------------------------------------------------
# Every value a client sends is checked here against what storage can hold (migrations/): a
# frame that passes decoding must never fail further down, where it would end as a traceback or
# a dead letter instead of "Malformed message.".

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
MAX_CLIENT_MSG_ID: Final = 64
MAX_HISTORY_PAGE: Final = 100
MAX_NAME_CHARS: Final = 64  # above any username (3-30) or guest name (Guest + an int64)
MAX_REASON_CHARS: Final = 500
MAX_EMOTE_CHARS: Final = 64
# Mutes and bans: chat-service computes the expiry with an int4 parameter ($n::int).
MAX_SANCTION_S: Final = INT32_MAX
# Strings that storage can hold: PostgreSQL text cannot hold U+0000, and UTF-8 no lone surrogate.
# Client frames: msgspec's JSON decoder refuses lone surrogates, and decode_client refuses U+0000
# in any string field (a pattern would cost a regex per string on the hot path). Other decoders
# (the REST API, tokens) use the pattern.
TEXT_PATTERN: Final = "^[^\\x00\\ud800-\\udfff]*$"

ChannelId = Annotated[int, Meta(ge=INT32_MIN, le=INT32_MAX)]  # channels.id is integer
Seq = Annotated[int, Meta(ge=0, le=INT64_MAX)]  # messages.seq is bigint
Name = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]
Reason = Annotated[str, Meta(max_length=MAX_REASON_CHARS)]
ClientMsgId = Annotated[str, Meta(min_length=1, max_length=MAX_CLIENT_MSG_ID)]
SanctionSeconds = Annotated[int, Meta(ge=0, le=MAX_SANCTION_S)]

ERR_INVALID_HELLO: Final = "Invalid HELLO message"
ERR_INVALID_FORMAT: Final = "Invalid message format"
ERR_MALFORMED: Final = "Malformed message."
ERR_NO_CHANNEL: Final = "Channel does not exist."
ERR_NOT_MEMBER: Final = "You must join this channel first"
ERR_NO_PERMISSION: Final = "You don't have permission to run this command."
ERR_MUTED: Final = "You are muted in this channel."
ERR_BANNED: Final = "You are banned from this channel."
ERR_SEND_FAILED: Final = "Failed to send message"
ERR_JOIN_FAILED: Final = "Error trying to join the channel."
ERR_UNEXPECTED: Final = "Unexpeted error. Try again."  # sic: the original client matches it
ERR_TOO_LONG: Final = "Message is too long."
ERR_TOO_FAST: Final = "You are sending messages too fast."
ERR_UNAVAILABLE: Final = "Service temporarily unavailable, retry."
ERR_NO_MESSAGE: Final = "Message does not exist."


class UserFrom(Struct, frozen=True, kw_only=True):
    """A user as frames show it."""

    username: str
    is_guest: bool


# -- client -> server payloads ---------------------------------------------------------------
# omit_defaults: re-encoding a client frame reproduces it (the golden files check that).


class HelloIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    token: str | None = None


class ChannelIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Payload of frames that name only a channel: channel_leave, chat_typing."""

    channel_id: ChannelId


class JoinIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    channel_id: ChannelId
    since_seq: Seq | None = None


class ChatSendIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    channel_id: ChannelId
    content: str  # its length limit is a setting, checked by the gateway
    client_msg_id: ClientMsgId | None = None


class ReactIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    emote: Annotated[str, Meta(min_length=1, max_length=MAX_EMOTE_CHARS)]
    message_id: str  # a UUID, checked by the gateway
    channel_id: ChannelId


class KickIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    channel_id: ChannelId
    target: Name
    reason: Reason | None = None


class MuteIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """chat_mute, chat_ban and chat_unban: duration in seconds, null or 0 is indefinite."""

    channel_id: ChannelId
    target: Name
    duration: SanctionSeconds | None = None
    reason: Reason | None = None


class UnmuteIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    channel_id: ChannelId
    target: Name


class HistoryIn(Struct, frozen=True, kw_only=True, omit_defaults=True):
    channel_id: ChannelId
    before_seq: Seq | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_HISTORY_PAGE)] = 50


ClientPayload = (
    HelloIn | ChannelIn | JoinIn | ChatSendIn | ReactIn | KickIn | MuteIn | UnmuteIn | HistoryIn
)

CLIENT_PAYLOADS: Final[dict[str, type[ClientPayload]]] = {
    "hello": HelloIn,
    "chat_send": ChatSendIn,
    "chat_react_add": ReactIn,
    "chat_react_remove": ReactIn,
    "chat_typing": ChannelIn,
    "chat_kick": KickIn,
    "chat_mute": MuteIn,
    "chat_unmute": UnmuteIn,
    "chat_ban": MuteIn,
    "chat_unban": UnmuteIn,
    "channel_join": JoinIn,
    "channel_leave": ChannelIn,
    "channel_history": HistoryIn,
}


class ClientFrame(Struct, frozen=True, kw_only=True):
    """A decoded client frame: its type and its typed payload."""

    type: str
    payload: ClientPayload


class _ClientEnvelope(Struct, frozen=True, kw_only=True):
    # Only ``type`` decides between "Invalid message format" and "Malformed message.": the rest
    # is kept raw so that a known type with a bad payload, timestamp or id is "Malformed".
    type: str
    payload: Raw = Raw()  # empty when absent
    timestamp: Raw = Raw()
    id: Raw = Raw()


class _ClientEnvelopeOut(Struct, frozen=True, kw_only=True):
    type: str
    timestamp: str | None
    id: str | None
    payload: ClientPayload


_envelope_decoder: Final = msgspec.json.Decoder(_ClientEnvelope)
_optional_str: Final = msgspec.json.Decoder(str | None)
# strict=False: integer fields also accept numeric strings ("8"), as the original server did.
_payload_decoders: Final = {
    name: msgspec.json.Decoder(cls, strict=False) for name, cls in CLIENT_PAYLOADS.items()
}


def decode_client(data: str | bytes) -> ClientFrame:
    """Decode one client frame.

    Raises:
        ProtocolError: with the PROTOCOL.md error text to send back.
    """
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeError, RecursionError) as exc:
        # RecursionError: JSON nested thousands deep, which the frame size limit allows.
        raise ProtocolError(_fault_of_undecodable(data)) from exc
    decoder = _payload_decoders.get(envelope.type)
    if decoder is None:
        raise ProtocolError(ERR_INVALID_FORMAT)
    try:
        if not envelope.payload:
            raise ValueError("missing payload")
        timestamp = _optional_str.decode(envelope.timestamp) if envelope.timestamp else None
        if timestamp is not None:
            datetime.fromisoformat(timestamp)
        frame_id = _optional_str.decode(envelope.id) if envelope.id else None
        if frame_id is not None:
            uuid.UUID(frame_id)
        payload = decoder.decode(envelope.payload)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ERR_MALFORMED) from exc
    if _holds_nul(payload):
        raise ProtocolError(ERR_MALFORMED)
    return ClientFrame(type=envelope.type, payload=payload)


def _holds_nul(payload: ClientPayload) -> bool:
    # A one-character search is a memchr: far cheaper than a pattern (a regex) on each field.
    for field in payload.__struct_fields__:
        value = getattr(payload, field)
        if isinstance(value, str) and "\x00" in value:
            return True
    return False


def _fault_of_undecodable(data: str | bytes) -> str:
    """The error for a frame msgspec cannot decode: "Malformed" if it is JSON of a known type.

    The JSON grammar allows an escaped lone surrogate (``"\\ud800"``), which no string can hold
    and msgspec refuses; such a frame is still a known type with a bad payload.
    """
    frame = _json_or_none(data)
    frame_type = frame.get("type") if isinstance(frame, dict) else None
    if isinstance(frame_type, str) and frame_type in CLIENT_PAYLOADS:
        return ERR_MALFORMED
    return ERR_INVALID_FORMAT


def encode_client(frame_type: str, payload: ClientPayload, *, stamp: bool = False) -> bytes:
    """Encode a client frame (the Python client sends these); ``stamp`` adds timestamp and id."""
    if CLIENT_PAYLOADS.get(frame_type) is not type(payload):
        raise ValueError(f"{type(payload).__name__} is not the payload of {frame_type!r}")
    return _client_encoder.encode(
        _ClientEnvelopeOut(
            type=frame_type,
            timestamp=utc_timestamp() if stamp else None,
            id=new_id() if stamp else None,
            payload=payload,
        )
    )


# -- server -> client payloads ---------------------------------------------------------------


class HelloOut(Struct, frozen=True, kw_only=True):
    token: str | None
    user: UserFrom


class ErrorOut(Struct, frozen=True, kw_only=True):
    detail: str
    retry_after_ms: int | UnsetType = UNSET
    # [ext] The client frame that caused the error, when it named them: which send failed.
    channel_id: int | UnsetType = UNSET
    client_msg_id: str | UnsetType = UNSET


class ReactionSummary(Struct, frozen=True, kw_only=True):
    emote: str
    count: int
    users: list[str]


class ChatSendOut(Struct, frozen=True, kw_only=True):
    channel_id: int
    sender: UserFrom
    content: str
    seq: int | UnsetType = UNSET
    client_msg_id: str | UnsetType = UNSET
    reactions: list[ReactionSummary] | UnsetType = UNSET


class ReactOut(Struct, frozen=True, kw_only=True):
    emote: str
    message_id: str
    channel_id: int
    user: UserFrom | UnsetType = UNSET
    count: int | UnsetType = UNSET


class ChannelUserOut(Struct, frozen=True, kw_only=True):
    """channel_join, channel_leave and chat_typing: who did it where."""

    channel_id: int
    user: UserFrom


class MembersOut(Struct, frozen=True, kw_only=True):
    channel_id: int
    members: list[UserFrom]


class KickOut(Struct, frozen=True, kw_only=True):
    channel_id: int
    target: str
    reason: str | None


class MuteOut(Struct, frozen=True, kw_only=True):
    """chat_mute, chat_unmute, chat_ban, chat_unban."""

    channel_id: int
    target: str
    duration: int | None
    reason: str | None


class ResumedOut(Struct, frozen=True, kw_only=True):
    channel_id: int
    recovered: bool
    last_seq: int


class HistoryMessage(Struct, frozen=True, kw_only=True):
    id: str
    timestamp: str
    channel_id: int
    sender: UserFrom
    content: str
    seq: int
    client_msg_id: str | UnsetType = UNSET
    reactions: list[ReactionSummary] = []


class HistoryOut(Struct, frozen=True, kw_only=True):
    channel_id: int
    messages: list[HistoryMessage]
    has_more: bool


class ServerFrame(Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every server frame; the subclass's tag is the frame's ``type``."""

    timestamp: str
    id: str


class HelloFrame(ServerFrame, frozen=True, kw_only=True, tag="hello"):
    payload: HelloOut


class ErrorFrame(ServerFrame, frozen=True, kw_only=True, tag="error"):
    payload: ErrorOut


class ChatSendFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_send"):
    payload: ChatSendOut


class ReactAddFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_react_add"):
    payload: ReactOut


class ReactRemoveFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_react_remove"):
    payload: ReactOut


class TypingFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_typing"):
    payload: ChannelUserOut


class KickFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_kick"):
    payload: KickOut


class MuteFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_mute"):
    payload: MuteOut


class UnmuteFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_unmute"):
    payload: MuteOut


class BanFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_ban"):
    payload: MuteOut


class UnbanFrame(ServerFrame, frozen=True, kw_only=True, tag="chat_unban"):
    payload: MuteOut


class JoinFrame(ServerFrame, frozen=True, kw_only=True, tag="channel_join"):
    payload: ChannelUserOut


class LeaveFrame(ServerFrame, frozen=True, kw_only=True, tag="channel_leave"):
    payload: ChannelUserOut


class MembersFrame(ServerFrame, frozen=True, kw_only=True, tag="channel_members"):
    payload: MembersOut


class ResumedFrame(ServerFrame, frozen=True, kw_only=True, tag="channel_resumed"):
    payload: ResumedOut


class HistoryFrame(ServerFrame, frozen=True, kw_only=True, tag="channel_history"):
    payload: HistoryOut


AnyServerFrame = (
    HelloFrame
    | ErrorFrame
    | ChatSendFrame
    | ReactAddFrame
    | ReactRemoveFrame
    | TypingFrame
    | KickFrame
    | MuteFrame
    | UnmuteFrame
    | BanFrame
    | UnbanFrame
    | JoinFrame
    | LeaveFrame
    | MembersFrame
    | ResumedFrame
    | HistoryFrame
)

_server_encoder: Final = msgspec.json.Encoder()
_client_encoder: Final = _server_encoder
_server_decoder: Final = msgspec.json.Decoder(AnyServerFrame)


def utc_timestamp(moment: datetime | None = None) -> str:
    """UTC ISO-8601 with microseconds, ending in ``Z``."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id() -> str:
    return str(uuid.uuid4())


def encode_frame(frame: ServerFrame) -> bytes:
    return _server_encoder.encode(frame)


def decode_server(data: str | bytes) -> AnyServerFrame:
    """Decode a server frame (the Python client and the tests use this)."""
    frame: AnyServerFrame = _server_decoder.decode(data)
    return frame


def fresh_frame(frame_type: type[ServerFrame], payload: Struct) -> bytes:
    """An encoded frame with a fresh id and the current time (any frame but a stored message)."""
    # Every subclass of ServerFrame has a ``payload``; the base class cannot declare its type.
    frame = frame_type(timestamp=utc_timestamp(), id=new_id(), payload=payload)  # type: ignore[call-arg]
    return encode_frame(frame)


def error_frame(
    detail: str,
    *,
    retry_after_ms: int | None = None,
    channel_id: int | None = None,
    client_msg_id: str | None = None,
) -> bytes:
    """An encoded ``error`` frame, fresh id and timestamp; absent keys for None arguments."""
    payload = ErrorOut(
        detail=detail,
        retry_after_ms=UNSET if retry_after_ms is None else retry_after_ms,
        channel_id=UNSET if channel_id is None else channel_id,
        client_msg_id=UNSET if client_msg_id is None else client_msg_id,
    )
    return fresh_frame(ErrorFrame, payload)


class FrameContext(Struct, frozen=True, kw_only=True):
    """What an error frame repeats of the client frame that caused it."""

    channel_id: int | None = None
    client_msg_id: str | None = None


NO_CONTEXT: Final = FrameContext()


def frame_context(data: str | bytes | None) -> FrameContext:
    """The ``channel_id`` and ``client_msg_id`` of a client frame, each only if it is valid.

    Lenient, for the error path: the frame may be malformed anywhere else (that may be why it
    is answered with an error), and a value that is itself invalid is left out rather than
    echoed, so an error frame never carries a key of the wrong type.
    """
    frame = None if data is None else _json_or_none(data)
    payload = frame.get("payload") if isinstance(frame, dict) else None
    if not isinstance(payload, dict):
        return NO_CONTEXT
    return FrameContext(
        channel_id=_convert_or_none(payload.get("channel_id"), ChannelId),
        client_msg_id=_convert_or_none(payload.get("client_msg_id"), _EchoedMsgId),
    )


# Only a client_msg_id that decode_client would accept is repeated (the error path: a regex is
# cheap here).
_EchoedMsgId = Annotated[ClientMsgId, Meta(pattern=TEXT_PATTERN)]


def _json_or_none(data: str | bytes) -> Any:
    """``data`` parsed by the JSON grammar (which, unlike msgspec, lets a string hold an escaped
    lone surrogate), or None if it is not JSON."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
        return json.loads(text, parse_constant=_not_json)  # NaN and Infinity are not JSON
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return None


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def _convert_or_none(value: Any, kind: Any) -> Any:
    if value is None:
        return None
    try:
        return msgspec.convert(value, kind, strict=False)  # "8" is 8, as in decode_client
    except (msgspec.ValidationError, UnicodeError):  # a str holding a lone surrogate
        return None


def reply_error(
    detail: str, data: str | bytes | None, *, retry_after_ms: int | None = None
) -> bytes:
    """An encoded ``error`` frame answering the client frame ``data`` (None if it had no text):
    it carries the frame's ``channel_id`` and ``client_msg_id`` when the frame had valid ones."""
    context = frame_context(data)
    return error_frame(
        detail,
        retry_after_ms=retry_after_ms,
        channel_id=context.channel_id,
        client_msg_id=context.client_msg_id,
    )
