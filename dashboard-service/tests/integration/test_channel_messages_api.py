"""``/api/v1/channels/{id}/messages`` [ext]: channel history pages, like ``channel_history``.

Channels, messages and reactions are written with SQL the way chat-service writes them; the
pages must follow the WebSocket command's keyset rules (newest page first, each page oldest
first) and summarise reactions as chat-service does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import httpx
import pytest

FORBIDDEN = "You don't have permission to access this resource."
NOT_FOUND = "Channel doesn't exist"
BAD_BEFORE_SEQ = "Invalid request: before_seq: Expected an integer >= 0"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# Microseconds of zero must still be written out: the frames always carry six digits.
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]
AssertError = Callable[..., str]  # the conftest fixtures' types


def messages_url(channel_id: int) -> str:
    return f"/api/v1/channels/{channel_id}/messages"


@dataclass(frozen=True)
class Stored:
    """A channel of seven messages, seq 1-7, and the JSON each must come back as."""

    channel_id: int
    expected: dict[int, dict[str, Any]]  # seq -> message as the API must show it


async def insert_message(
    db: asyncpg.Pool,
    channel_id: int,
    seq: int,
    *,
    sender: str,
    is_guest: bool = False,
    content: str,
    created_at: datetime,
    client_msg_id: str | None = None,
) -> uuid.UUID:
    message_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO messages (id, channel_id, seq, sender_id, sender_username, sender_is_guest,"
        " content, client_msg_id, created_at) VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8)",
        message_id,
        channel_id,
        seq,
        sender,
        is_guest,
        content,
        client_msg_id,
        created_at,
    )
    await db.execute(
        "UPDATE channels SET last_seq = greatest(last_seq, $2) WHERE id = $1", channel_id, seq
    )
    return message_id


async def react(
    db: asyncpg.Pool, message_id: uuid.UUID, username: str, emote: str, at: datetime
) -> None:
    await db.execute(
        "INSERT INTO reactions (message_id, username, emote, created_at) VALUES ($1, $2, $3, $4)",
        message_id,
        username,
        emote,
        at,
    )


@pytest.fixture
async def stored(db: asyncpg.Pool, create_channel: Callable[[], Awaitable[int]]) -> Stored:
    channel_id = await create_channel()
    expected: dict[int, dict[str, Any]] = {}
    for seq in range(1, 8):
        guest = seq == 4
        sender = "Guest77" if guest else ("alice" if seq % 2 else "bob")
        # Zero microseconds for seq 1, odd ones elsewhere: both must print six digits.
        created_at = BASE + timedelta(seconds=seq, microseconds=0 if seq == 1 else 1000 * seq + 7)
        client_msg_id = f"c-{seq}" if seq in (3, 6) else None
        message_id = await insert_message(
            db,
            channel_id,
            seq,
            sender=sender,
            is_guest=guest,
            content=f"message {seq}",
            created_at=created_at,
            client_msg_id=client_msg_id,
        )
        message: dict[str, Any] = {
            "id": str(message_id),
            "timestamp": created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "channel_id": channel_id,
            "sender": {"username": sender, "is_guest": guest},
            "content": f"message {seq}",
            "seq": seq,
        }
        if client_msg_id is not None:
            message["client_msg_id"] = client_msg_id  # absent, not null, when none was sent
        message["reactions"] = []
        expected[seq] = message
    # Reactions on seq 6: "+1" first reacted before "heart", so it comes first although
    # "heart" has more users; users by reaction time, then name (carol and bob tie).
    six = uuid.UUID(expected[6]["id"])
    t = BASE + timedelta(minutes=1)
    await react(db, six, "zoe", "+1", t)
    await react(db, six, "dave", "heart", t + timedelta(seconds=1))
    await react(db, six, "carol", "heart", t + timedelta(seconds=2))
    await react(db, six, "bob", "heart", t + timedelta(seconds=2))
    await react(db, six, "alice", "+1", t + timedelta(seconds=3))
    expected[6]["reactions"] = [
        {"emote": "+1", "count": 2, "users": ["zoe", "alice"]},
        {"emote": "heart", "count": 3, "users": ["dave", "bob", "carol"]},
    ]
    # Seq 2: two emotes first used at one moment are ordered by emote.
    two = uuid.UUID(expected[2]["id"])
    await react(db, two, "alice", "smile", t)
    await react(db, two, "alice", "fire", t)
    expected[2]["reactions"] = [
        {"emote": "fire", "count": 1, "users": ["alice"]},
        {"emote": "smile", "count": 1, "users": ["alice"]},
    ]
    return Stored(channel_id=channel_id, expected=expected)


# -- paging --------------------------------------------------------------------------------------


async def test_paging_walks_back_through_the_channel(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored
) -> None:
    caller = await make_user()
    url = messages_url(stored.channel_id)
    first = await client.get(url, params={"limit": 3}, headers=caller.headers)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "channel_id": stored.channel_id,
        "messages": [stored.expected[seq] for seq in (5, 6, 7)],
        "has_more": True,
        "next_before_seq": 5,
    }
    second = await client.get(url, params={"limit": 3, "before_seq": 5}, headers=caller.headers)
    assert second.json() == {
        "channel_id": stored.channel_id,
        "messages": [stored.expected[seq] for seq in (2, 3, 4)],
        "has_more": True,
        "next_before_seq": 2,
    }
    last = await client.get(url, params={"limit": 3, "before_seq": 2}, headers=caller.headers)
    assert last.json() == {
        "channel_id": stored.channel_id,
        "messages": [stored.expected[1]],
        "has_more": False,
        "next_before_seq": None,
    }


async def test_walking_with_next_before_seq_visits_every_message_once(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored
) -> None:
    caller = await make_user()
    seen: list[int] = []
    params: dict[str, int] = {"limit": 2}
    for _ in range(10):
        body = (
            await client.get(messages_url(stored.channel_id), params=params, headers=caller.headers)
        ).json()
        seqs = [m["seq"] for m in body["messages"]]
        assert seqs == sorted(seqs)  # oldest first within a page
        seen = seqs + seen
        if not body["has_more"]:
            assert body["next_before_seq"] is None
            break
        assert body["next_before_seq"] == seqs[0]
        params["before_seq"] = body["next_before_seq"]
    assert seen == [1, 2, 3, 4, 5, 6, 7]


async def test_a_page_that_ends_exactly_at_the_first_message_has_no_more(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored
) -> None:
    caller = await make_user()
    url = messages_url(stored.channel_id)
    page = await client.get(url, params={"limit": 4, "before_seq": 5}, headers=caller.headers)
    body = page.json()
    assert [m["seq"] for m in body["messages"]] == [1, 2, 3, 4]
    assert body["has_more"] is False
    assert body["next_before_seq"] is None


async def test_the_default_page_is_the_newest_fifty(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    for seq in range(1, 53):
        await insert_message(db, channel_id, seq, sender="alice", content=str(seq), created_at=BASE)
    caller = await make_user()
    body = (await client.get(messages_url(channel_id), headers=caller.headers)).json()
    assert [m["seq"] for m in body["messages"]] == list(range(3, 53))
    assert body["has_more"] is True
    assert body["next_before_seq"] == 3
    most = await client.get(messages_url(channel_id), params={"limit": 100}, headers=caller.headers)
    assert [m["seq"] for m in most.json()["messages"]] == list(range(1, 53))
    assert most.json()["has_more"] is False


async def test_before_seq_bounds(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored
) -> None:
    caller = await make_user()
    url = messages_url(stored.channel_id)
    newest = (await client.get(url, params={"limit": 2}, headers=caller.headers)).json()
    # An empty before_seq (what a form sends) and one beyond every seq both mean "newest".
    empty = await client.get(url, params={"limit": 2, "before_seq": ""}, headers=caller.headers)
    huge = await client.get(
        url, params={"limit": 2, "before_seq": str(2**70)}, headers=caller.headers
    )
    assert empty.json() == newest
    assert huge.json() == newest
    assert [m["seq"] for m in newest["messages"]] == [6, 7]
    # Nothing is below seq 1: an empty page, not an error.
    for before in (0, 1):
        bottom = await client.get(url, params={"before_seq": before}, headers=caller.headers)
        assert bottom.json() == {
            "channel_id": stored.channel_id,
            "messages": [],
            "has_more": False,
            "next_before_seq": None,
        }


async def test_pages_hold_only_their_own_channel(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    stored: Stored,
) -> None:
    other = await create_channel()
    await insert_message(db, other, 1, sender="mallory", content="elsewhere", created_at=BASE)
    caller = await make_user()
    mine = (await client.get(messages_url(stored.channel_id), headers=caller.headers)).json()
    assert [m["content"] for m in mine["messages"]] == [f"message {s}" for s in range(1, 8)]
    theirs = (await client.get(messages_url(other), headers=caller.headers)).json()
    assert [m["content"] for m in theirs["messages"]] == ["elsewhere"]
    assert theirs["channel_id"] == other


async def test_an_empty_channel_has_an_empty_page(
    client: httpx.AsyncClient, make_user: MakeUser, create_channel: Callable[[], Awaitable[int]]
) -> None:
    channel_id = await create_channel()
    caller = await make_user()
    response = await client.get(messages_url(channel_id), headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "channel_id": channel_id,
        "messages": [],
        "has_more": False,
        "next_before_seq": None,
    }


async def test_timestamps_are_utc_with_microseconds(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored
) -> None:
    caller = await make_user()
    body = (await client.get(messages_url(stored.channel_id), headers=caller.headers)).json()
    stamps = [m["timestamp"] for m in body["messages"]]
    assert all(TIMESTAMP.match(stamp) for stamp in stamps), stamps
    assert stamps[0] == "2024-05-01T12:00:01.000000Z"
    assert stamps[1] == "2024-05-01T12:00:02.002007Z"


async def test_messages_of_deleted_senders_stay_readable(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
) -> None:
    channel_id = await create_channel()
    sender = await make_user()
    message_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO messages (id, channel_id, seq, sender_id, sender_username, sender_is_guest,"
        " content) VALUES ($1, $2, 1, $3, $4, false, 'bye')",
        message_id,
        channel_id,
        sender.id,
        sender.username,
    )
    await db.execute("DELETE FROM users WHERE id = $1", sender.id)
    caller = await make_user()
    body = (await client.get(messages_url(channel_id), headers=caller.headers)).json()
    assert [(m["id"], m["sender"]) for m in body["messages"]] == [
        (str(message_id), {"username": sender.username, "is_guest": False})
    ]


# -- who may call it -----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "moderator", "admin"])
async def test_every_registered_user_may_read(
    client: httpx.AsyncClient, make_user: MakeUser, stored: Stored, role: str
) -> None:
    caller = await make_user(role)
    response = await client.get(messages_url(stored.channel_id), headers=caller.headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["messages"]) == 7


async def test_without_a_valid_token_is_401(
    client: httpx.AsyncClient, stored: Stored, assert_nonempty_error: AssertError
) -> None:
    url = messages_url(stored.channel_id)
    for headers in [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}]:
        response = await client.get(url, headers=headers)
        assert_nonempty_error(response, 401, "Not authenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    bad = await client.get(url, headers={"Authorization": "Bearer not.a.jwt"})
    assert_nonempty_error(bad, 401, "Could not validate credentials")


async def test_a_deleted_account_is_401(
    client: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: MakeUser,
    stored: Stored,
    assert_nonempty_error: AssertError,
) -> None:
    caller = await make_user()
    await db.execute("DELETE FROM users WHERE id = $1", caller.id)
    response = await client.get(messages_url(stored.channel_id), headers=caller.headers)
    assert_nonempty_error(response, 401, "Could not validate credentials")


async def test_a_guest_token_is_403(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    stored: Stored,
    assert_nonempty_error: AssertError,
) -> None:
    # /auth/login never gives a guest a token; one minted anyway still is no account.
    guest = await make_user(is_guest=True)
    response = await client.get(messages_url(stored.channel_id), headers=guest.headers)
    assert_nonempty_error(response, 403, FORBIDDEN)


async def test_unknown_channels_are_404(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    new_channel_id: Callable[[], int],
    assert_nonempty_error: AssertError,
) -> None:
    caller = await make_user()
    for channel_id in [new_channel_id(), 2**31, -(2**31) - 1, 2**70]:
        response = await client.get(messages_url(channel_id), headers=caller.headers)
        assert_nonempty_error(response, 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"limit": 0}, "Invalid request: limit: Expected `int` >= 1"),
        ({"limit": 101}, "Invalid request: limit: Expected `int` <= 100"),
        ({"limit": "many"}, None),
        ({"before_seq": -1}, BAD_BEFORE_SEQ),
        ({"before_seq": "abc"}, BAD_BEFORE_SEQ),
        ({"before_seq": "1.5"}, BAD_BEFORE_SEQ),
    ],
)
async def test_bad_parameters_are_422(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    stored: Stored,
    params: dict[str, Any],
    detail: str | None,
    assert_nonempty_error: AssertError,
) -> None:
    caller = await make_user()
    response = await client.get(
        messages_url(stored.channel_id), params=params, headers=caller.headers
    )
    text = assert_nonempty_error(response, 422, detail)
    assert text.startswith("Invalid request: ")


async def test_access_is_checked_before_the_parameters(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    stored: Stored,
    assert_nonempty_error: AssertError,
) -> None:
    url = messages_url(stored.channel_id)
    assert_nonempty_error(await client.get(url, params={"limit": 0}), 401, "Not authenticated")
    guest = await make_user(is_guest=True)
    assert_nonempty_error(await client.get(url, params={"limit": 0}, headers=guest.headers), 403)
