"""Client frame decoding (every error path and its PROTOCOL.md text) and server frame encoding."""

from __future__ import annotations

import json
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from justchat import wire
from justchat.errors import JustchatError, ProtocolError

INVALID_FORMAT = "Invalid message format"
MALFORMED = "Malformed message."
UUID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"


def frame(frame_type: str, payload: Any, **envelope: Any) -> bytes:
    return json.dumps({"type": frame_type, **envelope, "payload": payload}).encode()


def detail_of(data: str | bytes) -> str:
    with pytest.raises(ProtocolError) as caught:
        wire.decode_client(data)
    return caught.value.detail


def test_error_texts_match_protocol() -> None:
    assert wire.ERR_INVALID_FORMAT == INVALID_FORMAT
    assert wire.ERR_MALFORMED == MALFORMED
    assert wire.ERR_INVALID_HELLO == "Invalid HELLO message"
    assert wire.ERR_UNEXPECTED == "Unexpeted error. Try again."  # sic
    assert wire.ERR_NOT_MEMBER == "You must join this channel first"
    assert wire.ERR_NO_CHANNEL == "Channel does not exist."
    assert wire.ERR_NO_PERMISSION == "You don't have permission to run this command."
    assert wire.ERR_MUTED == "You are muted in this channel."
    assert wire.ERR_SEND_FAILED == "Failed to send message"
    assert wire.ERR_JOIN_FAILED == "Error trying to join the channel."


def test_protocol_error_is_a_justchat_error_with_detail() -> None:
    error = ProtocolError(MALFORMED)
    assert isinstance(error, JustchatError)
    assert error.detail == MALFORMED
    assert str(error) == MALFORMED


# -- envelope errors: "Invalid message format" -----------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"type":"hello","payload":{}', id="truncated"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param("", id="empty-str"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'"hello"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(b"{}", id="empty-object"),
        pytest.param(b'{"payload":{}}', id="missing-type"),
        pytest.param(b'{"type":null,"payload":{}}', id="null-type"),
        pytest.param(b'{"type":5,"payload":{}}', id="int-type"),
        pytest.param(b'{"type":"nope","payload":{}}', id="unknown-type"),
        pytest.param(b'{"type":"HELLO","payload":{}}', id="type-is-case-sensitive"),
        pytest.param(b'{"type":"error","payload":{"detail":"x"}}', id="server-only-error"),
        pytest.param(b'{"type":"channel_members","payload":{"channel_id":8}}', id="server-only"),
    ],
)
def test_envelope_errors(data: bytes | str) -> None:
    assert detail_of(data) == INVALID_FORMAT


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'{"type":"chat_send"}', id="missing-payload"),
        pytest.param(b'{"type":"chat_send","timestamp":5,"payload":{}}', id="timestamp-not-str"),
        pytest.param(b'{"type":"chat_send","id":5,"payload":{}}', id="id-not-str"),
    ],
)
def test_a_known_type_with_a_bad_envelope_is_malformed(data: bytes) -> None:
    assert detail_of(data) == MALFORMED


def test_unknown_type_wins_over_bad_payload() -> None:
    assert detail_of(frame("nope", "not an object")) == INVALID_FORMAT


# -- payload errors: "Malformed message." ----------------------------------------------------


@pytest.mark.parametrize(
    ("frame_type", "payload"),
    [
        pytest.param("chat_send", None, id="payload-null"),
        pytest.param("chat_send", [], id="payload-array"),
        pytest.param("chat_send", "x", id="payload-string"),
        pytest.param("hello", 1, id="hello-payload-int"),
        pytest.param("chat_send", {"channel_id": 8}, id="missing-content"),
        pytest.param("chat_send", {"content": "x"}, id="missing-channel"),
        pytest.param("chat_send", {"channel_id": 8, "content": 5}, id="content-int"),
        pytest.param("chat_send", {"channel_id": 8, "content": None}, id="content-null"),
        pytest.param("chat_send", {"channel_id": "eight", "content": "x"}, id="channel-word"),
        pytest.param("chat_send", {"channel_id": " 8", "content": "x"}, id="channel-space"),
        pytest.param("chat_send", {"channel_id": 8.5, "content": "x"}, id="channel-fraction"),
        pytest.param("chat_send", {"channel_id": True, "content": "x"}, id="channel-bool"),
        pytest.param("chat_send", {"channel_id": None, "content": "x"}, id="channel-null"),
        pytest.param("chat_send", {"channel_id": [8], "content": "x"}, id="channel-list"),
        pytest.param("channel_join", {"channel_id": 2**31}, id="channel-2**31"),
        pytest.param("channel_join", {"channel_id": str(2**31)}, id="channel-str-2**31"),
        pytest.param("channel_join", {"channel_id": -(2**31) - 1}, id="channel-below-int32"),
        pytest.param("channel_join", {"channel_id": 10**30}, id="channel-huge"),
        pytest.param("channel_join", {"channel_id": 8, "since_seq": -1}, id="since-negative"),
        pytest.param("channel_join", {"channel_id": 8, "since_seq": "x"}, id="since-word"),
        pytest.param("channel_leave", {}, id="leave-empty"),
        pytest.param("chat_typing", {"channel_id": {}}, id="typing-object"),
        pytest.param("hello", {"token": 5}, id="token-int"),
        pytest.param("hello", {"token": ["a"]}, id="token-list"),
        pytest.param(
            "chat_react_add", {"emote": "", "message_id": "m", "channel_id": 8}, id="emote-empty"
        ),
        pytest.param(
            "chat_react_add", {"emote": "x" * 65, "message_id": "m", "channel_id": 8}, id="emote-65"
        ),
        pytest.param("chat_react_remove", {"emote": "x", "channel_id": 8}, id="no-message-id"),
        pytest.param("chat_kick", {"channel_id": 8}, id="kick-no-target"),
        pytest.param("chat_kick", {"channel_id": 8, "target": 5}, id="kick-target-int"),
        pytest.param("chat_kick", {"channel_id": 8, "target": "b", "reason": 1}, id="kick-reason"),
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "duration": -1}, id="mute-negative"
        ),
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "duration": "soon"}, id="mute-word"
        ),
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "duration": 1.5}, id="mute-fraction"
        ),
        pytest.param("chat_ban", {"channel_id": 8}, id="ban-no-target"),
        pytest.param("chat_unmute", {"target": "b"}, id="unmute-no-channel"),
        pytest.param("chat_unban", {"channel_id": 8, "target": None}, id="unban-target-null"),
        pytest.param(
            "chat_send",
            {"channel_id": 8, "content": "x", "client_msg_id": ""},
            id="client-msg-id-empty",
        ),
        pytest.param(
            "chat_send",
            {"channel_id": 8, "content": "x", "client_msg_id": "a" * 65},
            id="client-msg-id-65",
        ),
        pytest.param(
            "chat_send",
            {"channel_id": 8, "content": "x", "client_msg_id": 7},
            id="client-msg-id-int",
        ),
        pytest.param("channel_history", {"channel_id": 8, "limit": 0}, id="limit-0"),
        pytest.param("channel_history", {"channel_id": 8, "limit": 101}, id="limit-101"),
        pytest.param("channel_history", {"channel_id": 8, "limit": "101"}, id="limit-str-101"),
        pytest.param("channel_history", {"channel_id": 8, "limit": -5}, id="limit-negative"),
        pytest.param("channel_history", {"channel_id": 8, "before_seq": -1}, id="before-negative"),
        pytest.param("channel_history", {"limit": 10}, id="history-no-channel"),
    ],
)
def test_payload_errors(frame_type: str, payload: Any) -> None:
    assert detail_of(frame(frame_type, payload)) == MALFORMED


# -- limits that match storage (issue 9): out of range is "Malformed message.", never further --

NUL = "\u0000"


@pytest.mark.parametrize(
    ("frame_type", "payload"),
    [
        # messages.seq is bigint: beyond it, chat-service's query (or msgpack) would fail.
        pytest.param("channel_join", {"channel_id": 8, "since_seq": 2**70}, id="since-2**70"),
        pytest.param("channel_join", {"channel_id": 8, "since_seq": 2**63}, id="since-2**63"),
        pytest.param("channel_join", {"channel_id": 8, "since_seq": str(2**63)}, id="since-str"),
        pytest.param("channel_history", {"channel_id": 8, "before_seq": 2**63}, id="before-2**63"),
        pytest.param(
            "channel_history", {"channel_id": 8, "before_seq": 2**64 + 1}, id="before-2**64+1"
        ),
        # chat-service binds a sanction's seconds as int4.
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "duration": 2**31}, id="mute-2**31"
        ),
        pytest.param(
            "chat_ban", {"channel_id": 8, "target": "b", "duration": 10**30}, id="ban-10**30"
        ),
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "duration": "2147483648"}, id="mute-str"
        ),
        # PostgreSQL text cannot hold U+0000: every string that is stored refuses it.
        pytest.param("chat_send", {"channel_id": 8, "content": f"a{NUL}b"}, id="content-nul"),
        pytest.param(
            "chat_send",
            {"channel_id": 8, "content": "x", "client_msg_id": f"c{NUL}"},
            id="client-msg-id-nul",
        ),
        pytest.param(
            "chat_react_add",
            {"emote": NUL, "message_id": UUID, "channel_id": 8},
            id="emote-nul",
        ),
        pytest.param("chat_kick", {"channel_id": 8, "target": f"b{NUL}"}, id="kick-target-nul"),
        pytest.param(
            "chat_mute", {"channel_id": 8, "target": "b", "reason": NUL}, id="mute-reason-nul"
        ),
        pytest.param("chat_unban", {"channel_id": 8, "target": NUL}, id="unban-target-nul"),
        # Longer than any username, longer than a reason may be.
        pytest.param(
            "chat_ban",
            {"channel_id": 8, "target": "b" * (wire.MAX_NAME_CHARS + 1)},
            id="target-too-long",
        ),
        pytest.param(
            "chat_kick",
            {"channel_id": 8, "target": "b", "reason": "r" * (wire.MAX_REASON_CHARS + 1)},
            id="reason-too-long",
        ),
    ],
)
def test_values_storage_cannot_hold_are_malformed(frame_type: str, payload: Any) -> None:
    assert detail_of(frame(frame_type, payload)) == MALFORMED


def test_nul_elsewhere_is_not_refused() -> None:
    """Only the payload's own fields are stored: U+0000 in an ignored key changes nothing, and
    the six characters of a literal backslash-u-0000 are ordinary text."""
    data = frame("chat_send", {"channel_id": 8, "content": "\\u0000", f"x{NUL}": f"y{NUL}"})
    assert wire.decode_client(data).payload == wire.ChatSendIn(channel_id=8, content="\\u0000")


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\udc00x", "a\\ud83d"])
def test_lone_surrogate_escapes_are_refused(escape: str) -> None:
    data = f'{{"type": "chat_send", "payload": {{"channel_id": 8, "content": "{escape}"}}}}'
    assert detail_of(data) == MALFORMED


def test_a_surrogate_pair_escape_is_one_character() -> None:
    data = '{"type": "chat_send", "payload": {"channel_id": 8, "content": "\\ud83d\\ude00"}}'
    assert wire.decode_client(data).payload == wire.ChatSendIn(channel_id=8, content="😀")


@pytest.mark.parametrize(
    ("frame_type", "payload", "expected"),
    [
        (
            "channel_join",
            {"channel_id": 8, "since_seq": wire.INT64_MAX},
            wire.JoinIn(channel_id=8, since_seq=2**63 - 1),
        ),
        (
            "channel_history",
            {"channel_id": 8, "before_seq": str(wire.INT64_MAX)},
            wire.HistoryIn(channel_id=8, before_seq=2**63 - 1),
        ),
        (
            "chat_mute",
            {"channel_id": 8, "target": "b", "duration": wire.MAX_SANCTION_S},
            wire.MuteIn(channel_id=8, target="b", duration=2**31 - 1),
        ),
        (
            "chat_kick",
            {"channel_id": 8, "target": "b" * 64, "reason": "r" * 500},
            wire.KickIn(channel_id=8, target="b" * 64, reason="r" * 500),
        ),
        (
            "chat_send",
            {"channel_id": 8, "content": "line\nbreak\ttab \u202e 🙂 \u0001"},
            wire.ChatSendIn(channel_id=8, content="line\nbreak\ttab \u202e 🙂 \u0001"),
        ),
    ],
)
def test_the_largest_values_storage_holds_are_accepted(
    frame_type: str, payload: dict[str, Any], expected: wire.ClientPayload
) -> None:
    assert wire.decode_client(frame(frame_type, payload)).payload == expected


@settings(max_examples=200)
@given(text=st.text())
def test_text_is_accepted_unless_it_holds_nul(text: str) -> None:
    data = frame("chat_send", {"channel_id": 8, "content": text})
    if NUL in text:
        assert detail_of(data) == MALFORMED
    else:
        assert wire.decode_client(data).payload == wire.ChatSendIn(channel_id=8, content=text)


@given(value=st.integers(min_value=-(2**80), max_value=2**80))
def test_seq_fields_accept_exactly_the_bigint_range(value: int) -> None:
    data = frame("channel_history", {"channel_id": 8, "before_seq": value})
    if 0 <= value <= 2**63 - 1:
        assert wire.decode_client(data).payload == wire.HistoryIn(channel_id=8, before_seq=value)
    else:
        assert detail_of(data) == MALFORMED


@pytest.mark.parametrize(
    "timestamp",
    ["garbage", "", "2025-13-01T00:00:00Z", "2025-01-15T25:00:00Z", "15/01/2025", "Z"],
)
def test_bad_timestamp_is_malformed(timestamp: str) -> None:
    assert detail_of(frame("channel_join", {"channel_id": 8}, timestamp=timestamp)) == MALFORMED


@pytest.mark.parametrize("frame_id", ["nope", "", "a1b2c3d4-e5f6-4a7b-8c9d", f"{UUID}0", "g" * 32])
def test_bad_uuid_id_is_malformed(frame_id: str) -> None:
    assert detail_of(frame("channel_join", {"channel_id": 8}, id=frame_id)) == MALFORMED


def test_a_bad_payload_is_malformed_for_every_client_type() -> None:
    for frame_type in wire.CLIENT_PAYLOADS:
        assert detail_of(frame(frame_type, [])) == MALFORMED, frame_type


# -- what is accepted ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-01-15T10:30:00.000Z",  # the browser's toISOString()
        "2025-01-15T10:30:00Z",
        "2025-01-15T10:30:00.123456+00:00",
        "2025-01-15T12:30:00+02:00",
        "2025-01-15T10:30:00",
    ],
)
def test_valid_timestamps_are_accepted(timestamp: str) -> None:
    decoded = wire.decode_client(frame("channel_join", {"channel_id": 8}, timestamp=timestamp))
    assert decoded.payload == wire.JoinIn(channel_id=8)


@pytest.mark.parametrize("frame_id", [UUID, UUID.upper(), str(uuid.uuid4()), None])
def test_valid_ids_are_accepted(frame_id: str | None) -> None:
    decoded = wire.decode_client(frame("channel_leave", {"channel_id": 8}, id=frame_id))
    assert decoded == wire.ClientFrame(type="channel_leave", payload=wire.ChannelIn(channel_id=8))


def test_null_timestamp_and_id_are_accepted() -> None:
    decoded = wire.decode_client(frame("hello", {}, timestamp=None, id=None))
    assert decoded == wire.ClientFrame(type="hello", payload=wire.HelloIn())


def test_str_and_bytes_decode_alike() -> None:
    data = frame("chat_send", {"channel_id": 8, "content": "héllo 👋"})
    assert wire.decode_client(data) == wire.decode_client(data.decode())
    assert wire.decode_client(data).payload == wire.ChatSendIn(channel_id=8, content="héllo 👋")


def test_unknown_top_level_keys_are_ignored() -> None:
    data = frame("chat_typing", {"channel_id": 8}, correlation_id="x", extra={"a": [1]}, v=2)
    assert wire.decode_client(data).payload == wire.ChannelIn(channel_id=8)


def test_unknown_payload_keys_are_ignored() -> None:
    payload = {
        "channel_id": 8,
        "content": "hi",
        "sender": {"username": "eve", "is_guest": False},
        "room_id": "r",
        "nested": {"deep": [1, 2]},
    }
    decoded = wire.decode_client(frame("chat_send", payload))
    assert decoded.payload == wire.ChatSendIn(channel_id=8, content="hi")


def test_hello_ignores_unknown_keys_and_reads_token() -> None:
    assert wire.decode_client(frame("hello", {"username": "x"})).payload == wire.HelloIn()
    decoded = wire.decode_client(frame("hello", {"token": "abc"}))
    assert decoded.payload == wire.HelloIn(token="abc")
    assert wire.decode_client(frame("hello", {"token": None})).payload == wire.HelloIn()


@pytest.mark.parametrize(
    ("frame_type", "payload", "expected"),
    [
        ("channel_join", {"channel_id": "8"}, wire.JoinIn(channel_id=8)),
        ("channel_join", {"channel_id": "-8"}, wire.JoinIn(channel_id=-8)),
        (
            "channel_join",
            {"channel_id": "8", "since_seq": "41"},
            wire.JoinIn(channel_id=8, since_seq=41),
        ),
        (
            "chat_send",
            {"channel_id": "8", "content": "x"},
            wire.ChatSendIn(channel_id=8, content="x"),
        ),
        ("chat_typing", {"channel_id": "8"}, wire.ChannelIn(channel_id=8)),
        (
            "chat_mute",
            {"channel_id": "8", "target": "b", "duration": "60"},
            wire.MuteIn(channel_id=8, target="b", duration=60),
        ),
        (
            "channel_history",
            {"channel_id": "8", "before_seq": "9", "limit": "100"},
            wire.HistoryIn(channel_id=8, before_seq=9, limit=100),
        ),
        (
            "chat_react_add",
            {"emote": "👍", "message_id": "m", "channel_id": "8"},
            wire.ReactIn(emote="👍", message_id="m", channel_id=8),
        ),
    ],
)
def test_numeric_strings_are_accepted_for_integer_fields(
    frame_type: str, payload: dict[str, Any], expected: wire.ClientPayload
) -> None:
    decoded = wire.decode_client(frame(frame_type, payload))
    assert decoded.payload == expected
    assert type(decoded.payload.channel_id) is int  # type: ignore[union-attr]


def test_numeric_strings_do_not_leak_into_string_fields() -> None:
    """A number where a string is expected stays an error (strict=False is about ints)."""
    assert detail_of(frame("chat_kick", {"channel_id": 8, "target": 123})) == MALFORMED


@pytest.mark.parametrize("channel_id", [wire.INT32_MIN, -1, 0, 1, wire.INT32_MAX])
def test_channel_id_int32_bounds_are_accepted(channel_id: int) -> None:
    assert wire.decode_client(frame("channel_leave", {"channel_id": channel_id})).payload == (
        wire.ChannelIn(channel_id=channel_id)
    )
    assert wire.INT32_MAX == 2**31 - 1
    assert wire.INT32_MIN == -(2**31)


def test_client_msg_id_up_to_64_chars() -> None:
    payload = {"channel_id": 8, "content": "x", "client_msg_id": "a" * 64}
    decoded = wire.decode_client(frame("chat_send", payload))
    assert decoded.payload == wire.ChatSendIn(channel_id=8, content="x", client_msg_id="a" * 64)
    assert wire.MAX_CLIENT_MSG_ID == 64


@pytest.mark.parametrize("limit", [1, 50, 100])
def test_history_limit_bounds_are_accepted(limit: int) -> None:
    decoded = wire.decode_client(frame("channel_history", {"channel_id": 8, "limit": limit}))
    assert decoded.payload == wire.HistoryIn(channel_id=8, limit=limit)


def test_history_defaults() -> None:
    decoded = wire.decode_client(frame("channel_history", {"channel_id": 8}))
    assert decoded.payload == wire.HistoryIn(channel_id=8, before_seq=None, limit=50)


def test_mute_duration_zero_and_null_are_accepted() -> None:
    for duration in (0, None):
        payload = {"channel_id": 8, "target": "b", "duration": duration}
        decoded = wire.decode_client(frame("chat_mute", payload))
        assert decoded.payload == wire.MuteIn(channel_id=8, target="b", duration=duration)


def test_the_same_payload_class_serves_several_types() -> None:
    for frame_type in ("chat_ban", "chat_mute"):
        decoded = wire.decode_client(frame(frame_type, {"channel_id": 8, "target": "b"}))
        assert decoded.type == frame_type
        assert decoded.payload == wire.MuteIn(channel_id=8, target="b")


def test_encode_client_rejects_a_payload_of_another_type() -> None:
    with pytest.raises(ValueError, match="is not the payload of 'chat_send'"):
        wire.encode_client("chat_send", wire.ChannelIn(channel_id=8))
    with pytest.raises(ValueError, match="is not the payload of 'nope'"):
        wire.encode_client("nope", wire.HelloIn())


def test_encode_client_omits_default_fields() -> None:
    encoded = wire.encode_client("chat_kick", wire.KickIn(channel_id=8, target="b"))
    assert encoded == (
        b'{"type":"chat_kick","timestamp":null,"id":null,"payload":{"channel_id":8,"target":"b"}}'
    )


# -- property: nothing but ProtocolError escapes ---------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "channel_id",
        "content",
        "client_msg_id",
        "since_seq",
        "emote",
        "message_id",
        "target",
        "reason",
        "duration",
        "before_seq",
        "limit",
        "token",
        "sender",
    ]
)
PAYLOADS = st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6) | JSON_VALUES
ENVELOPES = st.fixed_dictionaries(
    {"type": st.sampled_from([*wire.CLIENT_PAYLOADS, "nope", "error"]) | JSON_VALUES},
    optional={
        "payload": PAYLOADS,
        "timestamp": JSON_VALUES,
        "id": JSON_VALUES,
        "extra": JSON_VALUES,
    },
)

# database=None: no example database is replayed or written; every run draws afresh.
PROPERTY = settings(max_examples=300, database=None, deadline=None)


def decode_or_protocol_error(data: str | bytes) -> wire.ClientFrame | None:
    try:
        decoded = wire.decode_client(data)
    except ProtocolError as exc:
        detail = exc.detail
    else:
        assert decoded.type in wire.CLIENT_PAYLOADS
        assert type(decoded.payload) is wire.CLIENT_PAYLOADS[decoded.type]
        return decoded
    assert detail in (INVALID_FORMAT, MALFORMED)
    return None


@PROPERTY
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    decode_or_protocol_error(data)


# st.text() draws no lone surrogates, like a WebSocket text frame (always valid UTF-8).
@PROPERTY
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_protocol_error(data: str) -> None:
    decode_or_protocol_error(data)


@PROPERTY
@given(JSON_VALUES)
def test_arbitrary_json_values_raise_only_protocol_error(value: Any) -> None:
    decode_or_protocol_error(json.dumps(value))


@PROPERTY
@given(ENVELOPES)
def test_arbitrary_envelopes_raise_only_protocol_error(envelope: dict[str, Any]) -> None:
    decoded = decode_or_protocol_error(json.dumps(envelope))
    if decoded is not None:
        assert decoded.type == envelope["type"]


@PROPERTY
@given(st.integers())
def test_channel_id_range_property(channel_id: int) -> None:
    decoded = decode_or_protocol_error(frame("chat_typing", {"channel_id": channel_id}))
    in_range = wire.INT32_MIN <= channel_id <= wire.INT32_MAX
    assert (decoded is not None) == in_range
    if decoded is not None:
        assert decoded.payload == wire.ChannelIn(channel_id=channel_id)


# -- server frames ---------------------------------------------------------------------------

ALICE = wire.UserFrom(username="alice", is_guest=False)


def sample_frames() -> list[wire.ServerFrame]:
    """One frame of every server type, each built with fresh envelope values."""

    def env() -> dict[str, str]:
        return {"timestamp": wire.utc_timestamp(), "id": wire.new_id()}

    mute = wire.MuteOut(channel_id=8, target="b", duration=None, reason="")
    who = wire.ChannelUserOut(channel_id=8, user=ALICE)
    react = wire.ReactOut(emote="👍", message_id="m", channel_id=8)
    return [
        wire.HelloFrame(**env(), payload=wire.HelloOut(token=None, user=ALICE)),
        wire.ErrorFrame(**env(), payload=wire.ErrorOut(detail=MALFORMED)),
        wire.ChatSendFrame(
            **env(), payload=wire.ChatSendOut(channel_id=8, sender=ALICE, content="x")
        ),
        wire.ReactAddFrame(**env(), payload=react),
        wire.ReactRemoveFrame(**env(), payload=react),
        wire.TypingFrame(**env(), payload=who),
        wire.KickFrame(**env(), payload=wire.KickOut(channel_id=8, target="b", reason=None)),
        wire.MuteFrame(**env(), payload=mute),
        wire.UnmuteFrame(**env(), payload=mute),
        wire.BanFrame(**env(), payload=mute),
        wire.UnbanFrame(**env(), payload=mute),
        wire.JoinFrame(**env(), payload=who),
        wire.LeaveFrame(**env(), payload=who),
        wire.MembersFrame(**env(), payload=wire.MembersOut(channel_id=8, members=[ALICE])),
        wire.ResumedFrame(
            **env(), payload=wire.ResumedOut(channel_id=8, recovered=False, last_seq=0)
        ),
        wire.HistoryFrame(
            **env(), payload=wire.HistoryOut(channel_id=8, messages=[], has_more=False)
        ),
    ]


def test_sample_frames_cover_every_server_type() -> None:
    assert {type(f) for f in sample_frames()} == set(typing.get_args(wire.AnyServerFrame))


def test_server_frames_carry_all_four_envelope_keys_and_fresh_ids() -> None:
    seen: set[str] = set()
    for server_frame in sample_frames() + sample_frames():
        data = json.loads(wire.encode_frame(server_frame))
        assert list(data) == ["type", "timestamp", "id", "payload"]
        assert data["type"] == type(server_frame).__struct_config__.tag
        assert data["timestamp"].endswith("Z")
        datetime.fromisoformat(data["timestamp"])
        assert str(uuid.UUID(data["id"])) == data["id"]
        seen.add(data["id"])
        assert wire.decode_server(wire.encode_frame(server_frame)) == server_frame
    assert len(seen) == 2 * len(sample_frames())


def test_error_frame_is_fresh_each_time() -> None:
    first, second = (json.loads(wire.error_frame(MALFORMED)) for _ in range(2))
    for data in (first, second):
        assert list(data) == ["type", "timestamp", "id", "payload"]
        assert data["type"] == "error"
        assert data["payload"] == {"detail": MALFORMED}
        assert data["timestamp"].endswith("Z")
        uuid.UUID(data["id"])
    assert first["id"] != second["id"]


def test_error_frame_retry_after_only_when_given() -> None:
    assert "retry_after_ms" not in wire.error_frame(wire.ERR_TOO_FAST).decode()
    data = json.loads(wire.error_frame(wire.ERR_TOO_FAST, retry_after_ms=250))
    assert data["payload"] == {"detail": wire.ERR_TOO_FAST, "retry_after_ms": 250}
    # 0 is a value, not "absent".
    assert json.loads(wire.error_frame("x", retry_after_ms=0))["payload"]["retry_after_ms"] == 0


def test_error_frame_context_only_when_given() -> None:
    assert json.loads(wire.error_frame(MALFORMED))["payload"] == {"detail": MALFORMED}
    data = json.loads(wire.error_frame(wire.ERR_SEND_FAILED, channel_id=0, client_msg_id="c-1"))
    assert data["payload"] == {
        "detail": wire.ERR_SEND_FAILED,
        "channel_id": 0,  # 0 is a channel, not "absent"
        "client_msg_id": "c-1",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            frame("chat_send", {"channel_id": 8, "content": "x", "client_msg_id": "c-1"}),
            wire.FrameContext(channel_id=8, client_msg_id="c-1"),
            id="valid-send",
        ),
        pytest.param(
            frame("chat_send", {"channel_id": "8", "content": "a\u0000", "client_msg_id": "c"}),
            wire.FrameContext(channel_id=8, client_msg_id="c"),
            id="malformed-content-numeric-string",
        ),
        pytest.param(
            frame("chat_send", {"channel_id": 2**31, "client_msg_id": "c" * 65}),
            wire.NO_CONTEXT,
            id="both-invalid-left-out",
        ),
        pytest.param(
            frame("channel_join", {"channel_id": -5, "since_seq": 2**70}),
            wire.FrameContext(channel_id=-5),
            id="join",
        ),
        pytest.param(
            frame("chat_send", {"channel_id": True, "client_msg_id": "c"}),
            wire.FrameContext(client_msg_id="c"),
            id="bool-channel",
        ),
        pytest.param(frame("fuzz", {"channel_id": 3}), wire.FrameContext(channel_id=3), id="type"),
        pytest.param(
            '{"type": "chat_send", "payload": {"channel_id": 8, "content": "\\ud800",'
            ' "client_msg_id": "c"}}',
            wire.FrameContext(channel_id=8, client_msg_id="c"),
            id="lone-surrogate-elsewhere",  # msgspec refuses the frame; the context is kept
        ),
        pytest.param(
            '{"payload": {"channel_id": 8, "client_msg_id": "c\\udc00"}}',
            wire.FrameContext(channel_id=8),
            id="lone-surrogate-in-client-msg-id",
        ),
        pytest.param(
            '{"payload": {"channel_id": "8\\ud800", "client_msg_id": "\\udfff"}}',
            wire.NO_CONTEXT,
            id="lone-surrogates-in-both",
        ),
        pytest.param(
            '{"payload": {"channel_id": NaN, "client_msg_id": "c"}}',
            wire.NO_CONTEXT,
            id="not-json",
        ),
        pytest.param(frame("chat_send", [8]), wire.NO_CONTEXT, id="payload-list"),
        pytest.param(frame("chat_send", None), wire.NO_CONTEXT, id="payload-null"),
        pytest.param(b'{"type": "chat_send"}', wire.NO_CONTEXT, id="no-payload"),
        pytest.param(b"[1, 2]", wire.NO_CONTEXT, id="not-an-object"),
        pytest.param(b'{"payload": {"channel_id": 8', wire.NO_CONTEXT, id="truncated"),
        pytest.param(b"\xff\xfe", wire.NO_CONTEXT, id="not-utf8"),
        pytest.param("[" * 5000, wire.NO_CONTEXT, id="deep"),
        pytest.param(None, wire.NO_CONTEXT, id="binary-frame"),
    ],
)
def test_frame_context_takes_only_valid_values(
    data: str | bytes | None, expected: wire.FrameContext
) -> None:
    assert wire.frame_context(data) == expected


def test_reply_error_repeats_the_frames_context() -> None:
    sent = frame("chat_send", {"channel_id": 8, "content": "\u0000", "client_msg_id": "c-9"})
    data = json.loads(wire.reply_error(MALFORMED, sent))
    assert data["payload"] == {"detail": MALFORMED, "channel_id": 8, "client_msg_id": "c-9"}
    rate = json.loads(wire.reply_error(wire.ERR_TOO_FAST, sent, retry_after_ms=5))
    assert rate["payload"] == {
        "detail": wire.ERR_TOO_FAST,
        "retry_after_ms": 5,
        "channel_id": 8,
        "client_msg_id": "c-9",
    }
    assert json.loads(wire.reply_error(INVALID_FORMAT, None))["payload"] == {
        "detail": INVALID_FORMAT
    }


@given(data=st.binary(max_size=200) | st.text(max_size=200))
def test_frame_context_never_raises(data: bytes | str) -> None:
    context = wire.frame_context(data)
    assert context.channel_id is None or wire.INT32_MIN <= context.channel_id <= wire.INT32_MAX


def test_unset_extension_fields_are_absent() -> None:
    send = wire.ChatSendFrame(
        timestamp="t", id="i", payload=wire.ChatSendOut(channel_id=8, sender=ALICE, content="x")
    )
    assert json.loads(wire.encode_frame(send))["payload"] == {
        "channel_id": 8,
        "sender": {"username": "alice", "is_guest": False},
        "content": "x",
    }
    react = wire.ReactAddFrame(
        timestamp="t", id="i", payload=wire.ReactOut(emote="e", message_id="m", channel_id=8)
    )
    assert json.loads(wire.encode_frame(react))["payload"] == {
        "emote": "e",
        "message_id": "m",
        "channel_id": 8,
    }
    history = wire.HistoryMessage(
        id="m", timestamp="t", channel_id=8, sender=ALICE, content="x", seq=1
    )
    assert "client_msg_id" not in json.loads(msgspec.json.encode(history))


def test_set_extension_fields_are_present() -> None:
    send = wire.ChatSendFrame(
        timestamp="t",
        id="i",
        payload=wire.ChatSendOut(
            channel_id=8, sender=ALICE, content="x", seq=0, client_msg_id="c", reactions=[]
        ),
    )
    payload = json.loads(wire.encode_frame(send))["payload"]
    assert payload["seq"] == 0
    assert payload["client_msg_id"] == "c"
    assert payload["reactions"] == []


def test_null_fields_of_the_original_stay_null() -> None:
    """Fields the original server sent as null are written, not omitted."""
    kick = wire.KickFrame(
        timestamp="t", id="i", payload=wire.KickOut(channel_id=8, target="b", reason=None)
    )
    assert json.loads(wire.encode_frame(kick))["payload"] == {
        "channel_id": 8,
        "target": "b",
        "reason": None,
    }
    hello = wire.HelloFrame(timestamp="t", id="i", payload=wire.HelloOut(token=None, user=ALICE))
    assert json.loads(wire.encode_frame(hello))["payload"]["token"] is None


def test_decode_server_rejects_unknown_types() -> None:
    with pytest.raises(msgspec.ValidationError):
        wire.decode_server(b'{"type":"nope","timestamp":"t","id":"i","payload":{}}')


# -- timestamps and ids ----------------------------------------------------------------------


def test_utc_timestamp_now_ends_in_z_with_microseconds() -> None:
    before = datetime.now(UTC)
    stamp = wire.utc_timestamp()
    after = datetime.now(UTC)
    assert stamp.endswith("Z")
    assert "+" not in stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= after
    assert len(stamp.split(".")[1]) == len("123456Z")


def test_utc_timestamp_converts_other_zones() -> None:
    moment = datetime(2025, 1, 15, 12, 30, 0, tzinfo=timezone(timedelta(hours=2)))
    assert wire.utc_timestamp(moment) == "2025-01-15T10:30:00.000000Z"
    assert wire.utc_timestamp(datetime(2025, 1, 15, 10, 30, 0, 5, tzinfo=UTC)) == (
        "2025-01-15T10:30:00.000005Z"
    )


def test_new_id_is_a_fresh_uuid4() -> None:
    ids = {wire.new_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(uuid.UUID(i).version == 4 for i in ids)
