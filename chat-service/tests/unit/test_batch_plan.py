"""``plan_batch``: which sends of a batch are new, and what each send is answered with."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chat_service.store import StoredMessage, plan_batch
from justchat.events import Actor, Origin, SendCmd

ALICE = Actor(user_id=1, username="alice", is_guest=False, role="user")
BOB = Actor(user_id=2, username="bob", is_guest=False, role="user")
ORIGIN = Origin(gateway="gw", conn="c")


def send(channel_id: int, actor: Actor, cmid: str | None = None, msg_id: str = "") -> SendCmd:
    return SendCmd(
        msg_id=msg_id or str(uuid.uuid4()),
        channel_id=channel_id,
        actor=actor,
        origin=ORIGIN,
        content="x",
        client_msg_id=cmid,
    )


def stored(cmd: SendCmd, seq: int) -> StoredMessage:
    return StoredMessage(
        id=uuid.UUID(cmd.msg_id),
        channel_id=cmd.channel_id,
        seq=seq,
        sender_username=cmd.actor.username,
        sender_is_guest=cmd.actor.is_guest,
        content=cmd.content,
        client_msg_id=cmd.client_msg_id,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        replayed=True,
    )


def plan(sends: list[SendCmd], existing: list[StoredMessage]) -> tuple[list[SendCmd], list[object]]:
    result = plan_batch(sends, [uuid.UUID(s.msg_id) for s in sends], existing)
    assert result.new_ids == [uuid.UUID(s.msg_id) for s in result.new]
    return result.new, result.answers


def test_all_new() -> None:
    sends = [send(1, ALICE), send(2, BOB, "k"), send(1, BOB, "k")]
    assert plan(sends, []) == (sends, [0, 1, 2])


def test_stored_ones_are_answered_with_the_stored_row() -> None:
    old, old_keyed = send(1, ALICE), send(1, BOB, "k")
    rows = [stored(old, 1), stored(old_keyed, 2)]
    fresh = send(1, ALICE)
    repeat = send(1, BOB, "k")  # another command, the same client_msg_id
    new, answers = plan([old, fresh, repeat], rows)
    assert new == [fresh]
    assert answers == [rows[0], 0, rows[1]]


def test_repeats_within_the_batch_point_at_the_first() -> None:
    first = send(1, ALICE, "k")
    again = send(1, ALICE, "k")  # same key
    same = first  # the same command twice
    other_channel = send(2, ALICE, "k")
    other_sender = send(1, BOB, "k")
    new, answers = plan([first, again, same, other_channel, other_sender], [])
    assert new == [first, other_channel, other_sender]
    assert answers == [0, 0, 0, 1, 2]


def test_the_id_is_matched_before_the_key() -> None:
    old = send(1, ALICE, "k1")
    row = stored(old, 1)
    key_holder = send(1, ALICE, "k2")
    key_row = stored(key_holder, 2)
    # A replay of ``old`` whose client_msg_id now names another stored message.
    replay = send(1, ALICE, "k2", msg_id=old.msg_id)
    new, answers = plan([replay], [row, key_row])
    assert new == []
    assert answers == [row]


def test_a_repeat_of_a_repeat_of_a_stored_message() -> None:
    old = send(1, ALICE, "k")
    row = stored(old, 1)
    new, answers = plan([send(1, ALICE, "k"), send(1, ALICE, "k")], [row])
    assert new == []
    assert answers == [row, row]
