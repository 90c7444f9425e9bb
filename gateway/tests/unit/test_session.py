"""The per-connection state machine: join buffering, seq dedup, leave and re-join."""

from __future__ import annotations

import pytest

from gateway.session import ChannelState, Session
from justchat.events import Actor
from justchat.wire import UserFrom


def make_session(**overrides: object) -> Session:
    args: dict[str, object] = {
        "conn_id": "c-1",
        "user_id": 7,
        "username": "alice",
        "is_guest": False,
        "role": "user",
    }
    args.update(overrides)
    return Session(**args)  # type: ignore[arg-type]


def f(n: int) -> bytes:
    """A stand-in for the encoded frame of the message with seq ``n``."""
    return f"frame-{n}".encode()


def joined(channel_id: int = 8, last_seq: int = 0) -> Session:
    session = make_session()
    session.begin_join(channel_id)
    assert session.finish_join(channel_id, last_seq) == []
    return session


def test_identity() -> None:
    session = make_session(user_id=None, username="Guest42", is_guest=True, role="guest")
    assert session.user == UserFrom(username="Guest42", is_guest=True)
    assert session.actor == Actor(user_id=None, username="Guest42", is_guest=True, role="guest")


def test_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'root'"):
        make_session(role="root")


def test_a_new_session_is_in_no_channel() -> None:
    session = make_session()
    assert not session.is_member(8)
    assert session.channels == {}


def test_joining_is_not_membership_yet() -> None:
    session = make_session()
    session.begin_join(8)
    assert not session.is_member(8)
    assert session.channels[8] == ChannelState(last_seq=0, buffer=[])
    assert not session.channels[8].joined
    session.finish_join(8, 0)
    assert session.is_member(8)
    assert session.channels[8].joined


def test_events_while_joining_are_buffered() -> None:
    session = make_session()
    session.begin_join(8)
    assert session.accept(8, 1, f(1)) is None
    assert session.accept(8, 0, b"typing") is None
    assert session.channels[8].buffer == [(1, f(1)), (0, b"typing")]


def test_finish_join_drops_what_history_covered_and_keeps_later_in_order() -> None:
    session = make_session()
    session.begin_join(8)
    for seq in (3, 4, 5, 6, 7):
        assert session.accept(8, seq, f(seq)) is None
    assert session.finish_join(8, history_last_seq=5) == [f(6), f(7)]
    assert session.channels[8].last_seq == 7
    assert session.channels[8].buffer is None


def test_finish_join_with_everything_covered() -> None:
    session = make_session()
    session.begin_join(8)
    session.accept(8, 1, f(1))
    session.accept(8, 2, f(2))
    assert session.finish_join(8, history_last_seq=2) == []
    assert session.channels[8].last_seq == 2
    assert session.accept(8, 2, f(2)) is None
    assert session.accept(8, 3, f(3)) == f(3)


def test_finish_join_keeps_unsequenced_frames_in_arrival_order() -> None:
    session = make_session()
    session.begin_join(8)
    session.accept(8, 4, f(4))
    session.accept(8, 0, b"members")
    session.accept(8, 6, f(6))
    session.accept(8, 0, b"join")
    assert session.finish_join(8, history_last_seq=4) == [b"members", f(6), b"join"]


def test_finish_join_drops_duplicates_and_out_of_order_replays_in_the_buffer() -> None:
    session = make_session()
    session.begin_join(8)
    for seq in (6, 6, 7, 5, 8, 7):
        session.accept(8, seq, f(seq))
    assert session.finish_join(8, history_last_seq=4) == [f(6), f(7), f(8)]
    assert session.channels[8].last_seq == 8


def test_finish_join_with_empty_history() -> None:
    session = make_session()
    session.begin_join(8)
    session.accept(8, 1, f(1))
    assert session.finish_join(8, history_last_seq=0) == [f(1)]


def test_unsequenced_frames_always_pass() -> None:
    session = joined(last_seq=10)
    assert session.accept(8, 0, b"typing") == b"typing"
    assert session.accept(8, 0, b"typing") == b"typing"
    assert session.channels[8].last_seq == 10


def test_live_events_advance_and_replays_are_dropped() -> None:
    session = joined(last_seq=3)
    assert session.accept(8, 3, f(3)) is None  # covered by history
    assert session.accept(8, 4, f(4)) == f(4)
    assert session.accept(8, 4, f(4)) is None  # duplicate
    assert session.accept(8, 2, f(2)) is None  # stale replay
    assert session.accept(8, 6, f(6)) == f(6)  # a gap is the sender's business, not ours
    assert session.accept(8, 5, f(5)) is None  # late arrival after a later seq
    assert session.channels[8].last_seq == 6


def test_channels_are_independent() -> None:
    session = make_session()
    for channel in (1, 2):
        session.begin_join(channel)
        session.finish_join(channel, 5)
    assert session.accept(1, 6, f(16)) == f(16)
    assert session.accept(2, 6, f(26)) == f(26)
    assert session.accept(1, 6, f(16)) is None
    session.begin_join(3)
    assert session.accept(3, 1, f(31)) is None  # channel 3 still joining
    assert session.accept(1, 7, f(17)) == f(17)


def test_events_for_channels_not_joined_return_none() -> None:
    session = joined(8)
    assert session.accept(9, 1, f(1)) is None
    assert session.accept(9, 0, b"typing") is None
    assert 9 not in session.channels


def test_leave() -> None:
    session = joined(8, last_seq=2)
    assert session.leave(8) is True
    assert not session.is_member(8)
    assert session.accept(8, 3, f(3)) is None
    assert session.leave(8) is False
    assert session.leave(99) is False


def test_leave_while_joining_discards_the_buffer() -> None:
    session = make_session()
    session.begin_join(8)
    session.accept(8, 1, f(1))
    assert session.leave(8) is True
    assert 8 not in session.channels


def test_rejoin_starts_over() -> None:
    session = joined(8, last_seq=10)
    assert session.accept(8, 11, f(11)) == f(11)
    session.leave(8)
    session.begin_join(8)
    assert not session.is_member(8)
    assert session.channels[8].last_seq == 0
    assert session.accept(8, 12, f(12)) is None  # buffered again
    assert session.finish_join(8, history_last_seq=11) == [f(12)]
    assert session.accept(8, 12, f(12)) is None
    assert session.accept(8, 13, f(13)) == f(13)


def test_begin_join_while_joined_starts_over() -> None:
    session = joined(8, last_seq=10)
    session.begin_join(8)
    assert not session.is_member(8)
    assert session.accept(8, 11, f(11)) is None
    assert session.finish_join(8, history_last_seq=3) == [f(11)]


def test_history_older_than_what_was_seen_does_not_rewind() -> None:
    session = make_session()
    session.begin_join(8)
    session.channels[8].last_seq = 9  # as if delivered earlier on this connection
    session.accept(8, 8, f(8))
    session.accept(8, 10, f(10))
    assert session.finish_join(8, history_last_seq=5) == [f(10)]
    assert session.channels[8].last_seq == 10
