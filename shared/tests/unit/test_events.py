"""Internal events: msgpack round trips of every command and pub/sub payload."""

from __future__ import annotations

import typing

import msgspec
import pytest

from justchat import events, wire
from justchat.events import (
    Actor,
    CatchUp,
    ChannelEvent,
    Direct,
    GuestCmd,
    HistoryCmd,
    JoinCmd,
    ModerateCmd,
    Origin,
    PresenceJoin,
    PresenceLeave,
    PresenceOnline,
    PresenceTyping,
    ReactCmd,
    SendCmd,
    SyncCmd,
)

ALICE = Actor(user_id=7, username="alice", is_guest=False, role="moderator")
GUEST = Actor(user_id=None, username="Guest42", is_guest=True, role="guest")
ORIGIN = Origin(gateway="gw-1", conn="c-9")
FRAME = wire.error_frame(wire.ERR_MALFORMED)

CHAT_COMMANDS: list[events.ChatCommand] = [
    SendCmd(
        msg_id="3f2b8c4e-9a1d-4e6f-8b7c-0d1e2f3a4b5c",
        channel_id=8,
        actor=ALICE,
        origin=ORIGIN,
        content="héllo 👋",
    ),
    SendCmd(
        msg_id="7c9d0e1f-2a3b-4c5d-8e6f-a7b8c9d0e1f2",
        channel_id=-8,
        actor=GUEST,
        origin=ORIGIN,
        content="",
        client_msg_id="c-1",
    ),
    JoinCmd(channel_id=8, actor=ALICE, origin=ORIGIN, request_id="r-1"),
    JoinCmd(channel_id=8, actor=GUEST, origin=ORIGIN, request_id="r-2", since_seq=41),
    GuestCmd(username="Guest42"),
    ModerateCmd(
        action="mute",
        channel_id=8,
        actor=ALICE,
        target="bob",
        duration_s=600,
        reason="flooding",
        origin=ORIGIN,
    ),
    ModerateCmd(action="unban", channel_id=8, actor=ALICE, target="bob"),  # from the REST API
    SyncCmd(channel_id=8, gateway="gw-1", since_seq=41),
    ReactCmd(
        add=True,
        channel_id=8,
        message_id="7c9d0e1f-2a3b-4c5d-8e6f-a7b8c9d0e1f2",
        emote=":+1:",
        actor=GUEST,
        origin=ORIGIN,
    ),
    HistoryCmd(channel_id=8, before_seq=None, limit=50, origin=ORIGIN),
]
PRESENCE_COMMANDS: list[events.AnyPresenceCmd] = [
    PresenceJoin(channel_id=8, origin=ORIGIN, user=ALICE.user_from()),
    PresenceLeave(channel_id=8, origin=ORIGIN),
    PresenceTyping(channel_id=8, user=GUEST.user_from()),
    PresenceOnline(origin=ORIGIN, username="alice", online=True),
    PresenceOnline(origin=ORIGIN, username="alice", online=False),
]


def test_every_command_type_is_covered() -> None:
    assert {type(c) for c in CHAT_COMMANDS} == set(typing.get_args(events.ChatCommand))
    assert {type(c) for c in PRESENCE_COMMANDS} == set(typing.get_args(events.AnyPresenceCmd))


@pytest.mark.parametrize("command", CHAT_COMMANDS, ids=repr)
def test_chat_command_round_trip(command: events.ChatCommand) -> None:
    data = events.encode(command)
    assert isinstance(data, bytes)
    decoded = events.chat_command_decoder.decode(data)
    assert decoded == command
    assert type(decoded) is type(command)


@pytest.mark.parametrize("command", PRESENCE_COMMANDS, ids=repr)
def test_presence_command_round_trip(command: events.AnyPresenceCmd) -> None:
    decoded = events.presence_command_decoder.decode(events.encode(command))
    assert decoded == command
    assert type(decoded) is type(command)


def test_commands_are_tagged_with_k() -> None:
    tags = {type(c): msgspec.msgpack.decode(events.encode(c))["k"] for c in CHAT_COMMANDS}
    assert tags == {
        SendCmd: "send",
        JoinCmd: "join",
        GuestCmd: "guest",
        ModerateCmd: "moderate",
        SyncCmd: "sync",
        ReactCmd: "react",
        HistoryCmd: "history",
    }
    presence = {type(c): msgspec.msgpack.decode(events.encode(c))["k"] for c in PRESENCE_COMMANDS}
    assert presence == {
        PresenceJoin: "join",
        PresenceLeave: "leave",
        PresenceTyping: "typing",
        PresenceOnline: "online",
    }


def test_actor_and_origin_are_compact_arrays() -> None:
    assert msgspec.msgpack.decode(events.encode(ALICE)) == [7, "alice", False, "moderator"]
    assert msgspec.msgpack.decode(events.encode(ORIGIN)) == ["gw-1", "c-9"]


def test_actor_user_from() -> None:
    assert ALICE.user_from() == wire.UserFrom(username="alice", is_guest=False)
    assert GUEST.user_from() == wire.UserFrom(username="Guest42", is_guest=True)


def test_optional_fields_default() -> None:
    decoded = events.chat_command_decoder.decode(events.encode(GuestCmd(username="x")))
    assert decoded == GuestCmd(username="x")
    send = events.chat_command_decoder.decode(events.encode(CHAT_COMMANDS[0]))
    assert isinstance(send, SendCmd)
    assert send.client_msg_id is None
    join = events.chat_command_decoder.decode(events.encode(CHAT_COMMANDS[2]))
    assert isinstance(join, JoinCmd)
    assert join.since_seq is None
    moderate = events.chat_command_decoder.decode(events.encode(CHAT_COMMANDS[6]))
    assert isinstance(moderate, ModerateCmd)
    assert (moderate.duration_s, moderate.reason, moderate.origin) == (None, None, None)


def test_a_presence_command_is_not_a_chat_command() -> None:
    # Both families use tag "join"; each decoder must read only its own shapes.
    with pytest.raises(msgspec.ValidationError):
        events.chat_command_decoder.decode(events.encode(PRESENCE_COMMANDS[1]))
    with pytest.raises(msgspec.ValidationError):
        events.chat_command_decoder.decode(msgspec.msgpack.encode({"k": "nope"}))


@pytest.mark.parametrize(
    "event",
    [
        ChannelEvent(seq=0, frame=FRAME),
        ChannelEvent(seq=2**40, frame=b""),
        ChannelEvent(seq=0, frame=FRAME, remove="bob"),
    ],
    ids=repr,
)
def test_channel_event_round_trip(event: ChannelEvent) -> None:
    data = events.encode(event)
    decoded = events.channel_event_decoder.decode(data)
    assert decoded == event
    assert msgspec.msgpack.decode(data) == [event.seq, event.frame, event.remove]


INBOX_EVENTS: list[events.InboxEvent] = [
    Direct(conn="c-9", frames=[FRAME]),
    Direct(conn="c-9", frames=[], request_id="r-1", ok=False),
    Direct(conn="c-9", frames=[FRAME, FRAME], request_id="r-2", ok=True, last_seq=42),
    CatchUp(channel_id=8, events=[]),
    CatchUp(
        channel_id=-8, events=[ChannelEvent(seq=5, frame=FRAME), ChannelEvent(seq=6, frame=b"")]
    ),
]


def test_every_inbox_event_type_is_covered() -> None:
    assert {type(e) for e in INBOX_EVENTS} == set(typing.get_args(events.InboxEvent))


@pytest.mark.parametrize("event", INBOX_EVENTS, ids=repr)
def test_inbox_event_round_trip(event: events.InboxEvent) -> None:
    decoded = events.inbox_decoder.decode(events.encode(event))
    assert decoded == event
    assert type(decoded) is type(event)


def test_inbox_events_are_tagged_arrays() -> None:
    assert msgspec.msgpack.decode(events.encode(Direct(conn="c", frames=[b"f"]))) == [
        "direct",
        "c",
        [b"f"],
        None,
        True,
        0,
    ]
    catch_up = CatchUp(channel_id=8, events=[ChannelEvent(seq=1, frame=b"f")])
    assert msgspec.msgpack.decode(events.encode(catch_up)) == ["catchup", 8, [[1, b"f", None]]]


def test_direct_defaults() -> None:
    direct = Direct(conn="c", frames=[])
    assert (direct.request_id, direct.ok, direct.last_seq) == (None, True, 0)
    assert events.inbox_decoder.decode(msgspec.msgpack.encode(["direct", "c", []])) == direct


def test_frames_stay_opaque_bytes() -> None:
    """A frame inside an event is forwarded as is: the same bytes come out."""
    decoded = events.channel_event_decoder.decode(events.encode(ChannelEvent(seq=5, frame=FRAME)))
    assert decoded.frame == FRAME
    assert wire.decode_server(decoded.frame).payload == wire.ErrorOut(detail=wire.ERR_MALFORMED)
