"""ChatStore against a real PostgreSQL: per-channel gap-free seq, idempotent sends, history reads,
guests, and the schema migrations.

The module migrates its own fresh database on the session's server (like the root conftest's
``database_url``, but private): these tests create guests and users, and other suites count
users or hand out guest numbers from the same tables.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import msgspec
import pytest

from chat_service.store import ChatStore, StoredMessage
from justchat import db
from justchat.events import Actor, Origin, SendCmd

ORIGIN = Origin(gateway="gw-test", conn="c-1")
_channel_ids = itertools.count(random.randrange(1_000, 2**30))


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    """A new empty database on the server, dropped afterwards."""
    name = f"justchat_store_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="module")
async def store_database_url(postgres_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def pool(store_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(store_database_url, min_size=1, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> ChatStore:
    return ChatStore(pool)


@pytest.fixture(scope="module")
async def users(pool: asyncpg.Pool) -> dict[str, Actor]:
    """Two registered users (rows in ``users``), as the gateway would describe them."""
    actors = {}
    for name in ("alice", "bob"):
        username = f"{name}-{uuid.uuid4().hex[:8]}"
        user_id = await pool.fetchval(
            "INSERT INTO users (username, password_hash) VALUES ($1, 'x') RETURNING id", username
        )
        actors[name] = Actor(user_id=user_id, username=username, is_guest=False, role="user")
    return actors


@pytest.fixture
def alice(users: dict[str, Actor]) -> Actor:
    return users["alice"]


@pytest.fixture
def bob(users: dict[str, Actor]) -> Actor:
    return users["bob"]


@pytest.fixture
def channel() -> int:
    return next(_channel_ids)


def send(
    channel_id: int,
    actor: Actor,
    content: str = "hi",
    *,
    msg_id: str | None = None,
    client_msg_id: str | None = None,
) -> SendCmd:
    return SendCmd(
        msg_id=msg_id or str(uuid.uuid4()),
        channel_id=channel_id,
        actor=actor,
        origin=ORIGIN,
        content=content,
        client_msg_id=client_msg_id,
    )


async def channel_rows(pool: asyncpg.Pool, channel_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, seq, content, sender_id, client_msg_id FROM messages WHERE channel_id = $1"
        " ORDER BY seq",
        channel_id,
    )


async def last_seq_of(pool: asyncpg.Pool, channel_id: int) -> int | None:
    value = await pool.fetchval("SELECT last_seq FROM channels WHERE id = $1", channel_id)
    return None if value is None else int(value)


# -- sequencing ------------------------------------------------------------------------------


async def test_seq_starts_at_one_and_is_gap_free(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    first = await store.store_messages([send(channel, alice, f"m{i}") for i in range(3)])
    assert [m.seq for m in first] == [1, 2, 3]
    assert [m.content for m in first] == ["m0", "m1", "m2"]
    assert not any(m.replayed for m in first)
    second = await store.store_messages([send(channel, alice, "m3"), send(channel, alice, "m4")])
    assert [m.seq for m in second] == [4, 5]
    assert [r["seq"] for r in await channel_rows(pool, channel)] == [1, 2, 3, 4, 5]
    assert await last_seq_of(pool, channel) == 5


async def test_stored_message_fields(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    cmd = send(channel, alice, "héllo 👋", client_msg_id="c-1")
    (stored,) = await store.store_messages([cmd])
    assert stored.id == uuid.UUID(cmd.msg_id)
    assert stored.channel_id == channel
    assert stored.seq == 1
    assert stored.sender_username == alice.username
    assert stored.sender_is_guest is False
    assert stored.content == "héllo 👋"
    assert stored.client_msg_id == "c-1"
    assert isinstance(stored.created_at, datetime)
    assert stored.created_at.tzinfo is not None
    assert stored.replayed is False
    (row,) = await channel_rows(pool, channel)
    assert row["sender_id"] == alice.user_id


async def test_a_batch_orders_each_channel_separately(
    store: ChatStore, alice: Actor, bob: Actor
) -> None:
    a, b = next(_channel_ids), next(_channel_ids)
    batch = [
        send(a, alice, "a1"),
        send(b, bob, "b1"),
        send(a, bob, "a2"),
        send(b, alice, "b2"),
        send(a, alice, "a3"),
    ]
    stored = await store.store_messages(batch)
    assert [(m.channel_id, m.seq, m.content) for m in stored] == [
        (a, 1, "a1"),
        (b, 1, "b1"),
        (a, 2, "a2"),
        (b, 2, "b2"),
        (a, 3, "a3"),
    ]


async def test_ensure_channel(store: ChatStore, alice: Actor, channel: int) -> None:
    assert await store.ensure_channel(channel) == 0
    assert await store.ensure_channel(channel) == 0
    await store.store_messages([send(channel, alice), send(channel, alice)])
    assert await store.ensure_channel(channel) == 2
    assert channel in await store.channel_ids()


async def test_concurrent_batches_get_exactly_one_to_n(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor, channel: int
) -> None:
    batches = [
        [send(channel, alice if b % 2 else bob, f"b{b}-m{i}") for i in range(5)] for b in range(10)
    ]
    results = await asyncio.gather(*(store.store_messages(batch) for batch in batches))
    seqs = sorted(m.seq for result in results for m in result)
    assert seqs == list(range(1, 51))
    for batch, result in zip(batches, results, strict=True):
        assert [m.id for m in result] == [uuid.UUID(c.msg_id) for c in batch]
        # A batch is one transaction under the channel's row lock: its seqs are consecutive.
        assert [m.seq for m in result] == list(range(result[0].seq, result[0].seq + 5))
    rows = await channel_rows(pool, channel)
    assert [r["seq"] for r in rows] == list(range(1, 51))
    assert await last_seq_of(pool, channel) == 50


async def test_concurrent_single_sends_on_a_new_channel(
    store: ChatStore, alice: Actor, channel: int
) -> None:
    results = await asyncio.gather(
        *(store.store_messages([send(channel, alice, str(i))]) for i in range(12))
    )
    assert sorted(r[0].seq for r in results) == list(range(1, 13))


# -- idempotency -----------------------------------------------------------------------------


async def test_replaying_a_batch_returns_the_same_rows_and_stores_nothing(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    batch = [send(channel, alice, f"m{i}") for i in range(3)]
    original = await store.store_messages(batch)
    replay = await store.store_messages(batch)
    assert [m.replayed for m in replay] == [True, True, True]
    assert replay == [_as_replayed(m) for m in original]
    assert len(await channel_rows(pool, channel)) == 3
    assert await last_seq_of(pool, channel) == 3
    (after,) = await store.store_messages([send(channel, alice, "next")])
    assert after.seq == 4  # the replay consumed no seq


async def test_partial_replay_keeps_the_sequence_gap_free(
    store: ChatStore, alice: Actor, channel: int
) -> None:
    old = send(channel, alice, "old")
    await store.store_messages([old])
    new = send(channel, alice, "new")
    replayed, stored = await store.store_messages([old, new])
    assert (replayed.seq, replayed.replayed, replayed.content) == (1, True, "old")
    assert (stored.seq, stored.replayed, stored.content) == (2, False, "new")


async def test_replay_ignores_changed_content(store: ChatStore, alice: Actor, channel: int) -> None:
    cmd = send(channel, alice, "first version")
    await store.store_messages([cmd])
    (again,) = await store.store_messages(
        [
            SendCmd(
                msg_id=cmd.msg_id, channel_id=channel, actor=alice, origin=ORIGIN, content="edited"
            )
        ]
    )
    assert again.replayed is True
    assert again.content == "first version"


async def test_same_client_msg_id_from_the_same_sender_returns_the_original(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    (original,) = await store.store_messages([send(channel, alice, "once", client_msg_id="k-1")])
    (repeat,) = await store.store_messages([send(channel, alice, "twice", client_msg_id="k-1")])
    assert repeat == _as_replayed(original)
    assert repeat.content == "once"
    assert len(await channel_rows(pool, channel)) == 1
    assert await last_seq_of(pool, channel) == 1


async def test_same_client_msg_id_twice_in_one_batch(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    first, second = await store.store_messages(
        [send(channel, alice, "a", client_msg_id="k"), send(channel, alice, "b", client_msg_id="k")]
    )
    assert second == _as_replayed(first)
    assert len(await channel_rows(pool, channel)) == 1


async def test_same_client_msg_id_from_another_sender_is_a_new_message(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor, channel: int
) -> None:
    (mine,) = await store.store_messages([send(channel, alice, "mine", client_msg_id="k-1")])
    (theirs,) = await store.store_messages([send(channel, bob, "theirs", client_msg_id="k-1")])
    assert theirs.replayed is False
    assert theirs.id != mine.id
    assert (theirs.seq, theirs.sender_username, theirs.content) == (2, bob.username, "theirs")
    assert len(await channel_rows(pool, channel)) == 2


async def test_same_client_msg_id_in_another_channel_is_a_new_message(
    store: ChatStore, alice: Actor, channel: int
) -> None:
    other = next(_channel_ids)
    (here,) = await store.store_messages([send(channel, alice, client_msg_id="k-1")])
    (there,) = await store.store_messages([send(other, alice, client_msg_id="k-1")])
    assert there.replayed is False
    assert there.id != here.id
    assert (there.channel_id, there.seq) == (other, 1)


async def test_messages_without_client_msg_id_are_never_merged(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    stored = await store.store_messages([send(channel, alice, "same") for _ in range(3)])
    assert [m.seq for m in stored] == [1, 2, 3]
    assert len({m.id for m in stored}) == 3
    assert len(await channel_rows(pool, channel)) == 3


def _as_replayed(message: StoredMessage) -> StoredMessage:
    return StoredMessage(
        id=message.id,
        channel_id=message.channel_id,
        seq=message.seq,
        sender_username=message.sender_username,
        sender_is_guest=message.sender_is_guest,
        content=message.content,
        client_msg_id=message.client_msg_id,
        created_at=message.created_at,
        replayed=True,
    )


# -- reads -----------------------------------------------------------------------------------


async def test_last_messages_oldest_first(store: ChatStore, alice: Actor, channel: int) -> None:
    await store.store_messages([send(channel, alice, f"m{i}") for i in range(1, 8)])
    messages, last_seq = await store.last_messages(channel, 3)
    assert [(m.seq, m.content) for m in messages] == [(5, "m5"), (6, "m6"), (7, "m7")]
    assert last_seq == 7
    everything, last_seq = await store.last_messages(channel, 50)
    assert [m.seq for m in everything] == list(range(1, 8))
    assert last_seq == 7
    assert not any(m.replayed for m in everything)


async def test_last_messages_of_an_unknown_or_empty_channel(store: ChatStore) -> None:
    unknown = next(_channel_ids)
    assert await store.last_messages(unknown, 50) == ([], 0)
    empty = next(_channel_ids)
    await store.ensure_channel(empty)
    assert await store.last_messages(empty, 50) == ([], 0)


async def test_last_messages_only_of_that_channel(
    store: ChatStore, alice: Actor, channel: int
) -> None:
    other = next(_channel_ids)
    await store.store_messages(
        [send(channel, alice, "here"), send(other, alice, "there"), send(other, alice, "there too")]
    )
    messages, last_seq = await store.last_messages(channel, 50)
    assert [m.content for m in messages] == ["here"]
    assert last_seq == 1


async def test_messages_after(store: ChatStore, alice: Actor, channel: int) -> None:
    await store.store_messages([send(channel, alice, f"m{i}") for i in range(1, 8)])
    messages, last_seq = await store.messages_after(channel, 4, 10)
    assert [m.seq for m in messages] == [5, 6, 7]
    assert last_seq == 7
    messages, last_seq = await store.messages_after(channel, 4, 2)
    assert [m.seq for m in messages] == [5, 6]
    assert last_seq == 7
    assert await store.messages_after(channel, 7, 10) == ([], 7)
    all_of_them, _ = await store.messages_after(channel, 0, 100)
    assert [m.content for m in all_of_them] == [f"m{i}" for i in range(1, 8)]
    assert await store.messages_after(next(_channel_ids), 0, 10) == ([], 0)


# -- guests ----------------------------------------------------------------------------------


async def test_a_guest_sending_is_stored_as_a_guest_user(
    store: ChatStore, pool: asyncpg.Pool, channel: int
) -> None:
    guest = Actor(
        user_id=None,
        username=f"Guest{random.randrange(10**9, 10**10)}",
        is_guest=True,
        role="guest",
    )
    first, second = await store.store_messages([send(channel, guest, "a"), send(channel, guest)])
    assert first.sender_is_guest is True
    assert first.sender_username == guest.username
    user = await pool.fetchrow(
        "SELECT id, is_guest, role, password_hash FROM users WHERE username = $1", guest.username
    )
    assert user is not None
    assert (user["is_guest"], user["role"], user["password_hash"]) == (True, "guest", None)
    rows = await channel_rows(pool, channel)
    assert [r["sender_id"] for r in rows] == [user["id"], user["id"]]
    await store.store_messages([send(channel, guest, "again")])
    count = await pool.fetchval("SELECT count(*) FROM users WHERE username = $1", guest.username)
    assert count == 1
    assert second.seq == 2


async def test_a_guest_created_first_is_reused_on_send(
    store: ChatStore, pool: asyncpg.Pool, channel: int
) -> None:
    name = f"Guest{random.randrange(10**9, 10**10)}"
    await store.create_guest(name)
    await store.create_guest(name)  # idempotent
    user_id = await pool.fetchval("SELECT id FROM users WHERE username = $1", name)
    guest = Actor(user_id=None, username=name, is_guest=True, role="guest")
    await store.store_messages([send(channel, guest)])
    (row,) = await channel_rows(pool, channel)
    assert row["sender_id"] == user_id


async def test_max_guest_number(store: ChatStore, pool: asyncpg.Pool) -> None:
    current = await store.max_guest_number()
    assert current >= 0
    await store.create_guest(f"Guest{current + 10}")
    assert await store.max_guest_number() == current + 10
    await store.create_guest(f"Guest{current + 3}")
    assert await store.max_guest_number() == current + 10
    # Not counted: a registered user with a guest-like name, other names, and numbers too long
    # for bigint.
    await pool.execute(
        "INSERT INTO users (username, password_hash) VALUES ($1, 'x')", f"Guest{current + 100}"
    )
    await store.create_guest("Guestabc")
    await store.create_guest("Guest")
    await store.create_guest("Guest12x")
    await store.create_guest("Guest" + "9" * 19)
    assert await store.max_guest_number() == current + 10
    await store.create_guest("Guest" + "9" * 18)
    assert await store.max_guest_number() == 10**18 - 1


# -- migrations ------------------------------------------------------------------------------


def test_migrations_are_ordered_and_unique() -> None:
    found = db.migrations()
    assert found, "no migrations found"
    versions = [version for version, _, _ in found]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert all(name.endswith(".sql") and sql.strip() for _, name, sql in found)
    assert found[0][0] == 1


async def test_migrate_is_idempotent(postgres_server_url: str) -> None:
    names = [name for _, name, _ in db.migrations()]
    async with fresh_database(postgres_server_url) as url:
        conn = await asyncpg.connect(url)
        try:
            assert await db.migrate(conn) == names
            assert await db.migrate(conn) == []
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            assert [(r["version"], r["name"]) for r in rows] == [
                (v, n) for v, n, _ in db.migrations()
            ]
        finally:
            await conn.close()


async def test_concurrent_migrations_apply_each_migration_once(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        conns = [await asyncpg.connect(url) for _ in range(3)]
        try:
            results = await asyncio.gather(*(db.migrate(c) for c in conns))
            applied = [name for result in results for name in result]
            assert sorted(applied) == sorted(name for _, name, _ in db.migrations())
            # Whoever took the lock first applied everything; the others found nothing to do.
            assert sorted(len(r) for r in results) == [0, 0, len(db.migrations())]
            count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
            assert count == len(db.migrations())
            for table in ("users", "channels", "messages"):
                assert await conns[1].fetchval("SELECT to_regclass($1)", table) == table
            # The advisory lock was released: another migrate does not block.
            assert await asyncio.wait_for(db.migrate(conns[2]), timeout=10) == []
        finally:
            for c in conns:
                await c.close()


async def test_create_pool_migrates_only_when_asked(postgres_server_url: str) -> None:
    async with fresh_database(postgres_server_url) as url:
        bare = await db.create_pool(url, migrate_schema=False, min_size=1, max_size=1)
        try:
            assert await bare.fetchval("SELECT to_regclass('schema_migrations')") is None
        finally:
            await bare.close()
        migrated = await db.create_pool(url, min_size=1, max_size=1)
        try:
            count = await migrated.fetchval("SELECT count(*) FROM schema_migrations")
            assert count == len(db.migrations())
        finally:
            await migrated.close()


# -- batches (one statement set per batch) ---------------------------------------------------


def guest_actor() -> Actor:
    return Actor(
        user_id=None,
        username=f"Guest{random.randrange(10**9, 10**10)}",
        is_guest=True,
        role="guest",
    )


async def test_a_big_batch_over_many_channels_and_senders_is_gap_free_in_stream_order(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor
) -> None:
    channels = [next(_channel_ids) for _ in range(40)]
    senders = [alice, bob, *(guest_actor() for _ in range(8))]
    batch = [send(channels[(i * 7) % 40], senders[i % len(senders)], f"m{i}") for i in range(600)]
    stored = await store.store_messages(batch)
    assert [m.id for m in stored] == [uuid.UUID(c.msg_id) for c in batch]
    assert not any(m.replayed for m in stored)
    for channel_id in channels:
        mine = [m for m in stored if m.channel_id == channel_id]
        sent = [c.content for c in batch if c.channel_id == channel_id]
        assert [m.seq for m in mine] == list(range(1, 16))
        assert [m.content for m in mine] == sent  # seq follows the stream's order
        rows = await channel_rows(pool, channel_id)
        assert [(r["seq"], r["content"]) for r in rows] == [(m.seq, m.content) for m in mine]
        assert await last_seq_of(pool, channel_id) == 15
    guest_ids = dict(
        await pool.fetch(
            "SELECT username, id FROM users WHERE username = ANY($1::text[])",
            [s.username for s in senders[2:]],
        )
    )
    assert len(guest_ids) == 8
    for m in stored:
        row = await pool.fetchrow("SELECT sender_id FROM messages WHERE id = $1", m.id)
        expected = {alice.username: alice.user_id, bob.username: bob.user_id, **guest_ids}
        assert row["sender_id"] == expected[m.sender_username]


async def test_a_batch_mixing_replays_repeats_and_new_sends(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor
) -> None:
    a, b = next(_channel_ids), next(_channel_ids)
    earlier = [
        send(a, alice, "a1", client_msg_id="k1"),
        send(a, bob, "a2"),
        send(b, alice, "b1", client_msg_id="k1"),
    ]
    first = await store.store_messages(earlier)
    assert [(m.channel_id, m.seq) for m in first] == [(a, 1), (a, 2), (b, 1)]
    new_a = send(a, alice, "a3", client_msg_id="k2")
    batch = [
        earlier[1],  # replay by id
        new_a,
        send(a, alice, "a1 again", client_msg_id="k1"),  # repeat of an earlier batch's
        send(b, bob, "b2", client_msg_id="k1"),  # same key, other sender: new
        send(a, alice, "a3 again", client_msg_id="k2"),  # repeat within this batch
        new_a,  # the same command twice in one batch
        earlier[2],  # replay by id, other channel
        send(b, alice, "b3"),
    ]
    got = await store.store_messages(batch)
    assert [(m.channel_id, m.seq, m.content, m.replayed) for m in got] == [
        (a, 2, "a2", True),
        (a, 3, "a3", False),
        (a, 1, "a1", True),
        (b, 2, "b2", False),
        (a, 3, "a3", True),
        (a, 3, "a3", True),
        (b, 1, "b1", True),
        (b, 3, "b3", False),
    ]
    assert got[0] == _as_replayed(first[1])
    assert got[2] == _as_replayed(first[0])
    assert got[4].id == got[1].id == uuid.UUID(new_a.msg_id)
    assert got[4] == got[5] == msgspec.structs.replace(got[1], replayed=True)
    assert [r["seq"] for r in await channel_rows(pool, a)] == [1, 2, 3]
    assert [r["seq"] for r in await channel_rows(pool, b)] == [1, 2, 3]
    assert (await last_seq_of(pool, a), await last_seq_of(pool, b)) == (3, 3)
    # Nothing of the repeats consumed a seq.
    (after,) = await store.store_messages([send(a, bob, "a4")])
    assert after.seq == 4


async def test_a_batch_that_is_all_replays_stores_nothing(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, channel: int
) -> None:
    batch = [send(channel, alice, f"m{i}", client_msg_id=f"k{i}") for i in range(5)]
    original = await store.store_messages(batch)
    repeats = [send(channel, alice, "other", client_msg_id=f"k{i}") for i in range(5)]
    again = await store.store_messages(batch + repeats)
    assert again == [_as_replayed(m) for m in original + original]
    assert await last_seq_of(pool, channel) == 5
    assert len(await channel_rows(pool, channel)) == 5


async def test_the_same_batch_stored_twice_at_once_stores_it_once(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor
) -> None:
    """A stale owner and the new one handling the same entries at once."""
    channels = [next(_channel_ids) for _ in range(5)]
    batch = [
        send(channels[i % 5], alice if i % 2 else bob, f"m{i}", client_msg_id=f"k{i}")
        for i in range(50)
    ]
    for round_ in range(3):
        results = await asyncio.gather(*(store.store_messages(batch) for _ in range(4)))
        for result in results:
            assert [m.id for m in result] == [uuid.UUID(c.msg_id) for c in batch]
            assert [m.seq for m in result] == [m.seq for m in results[0]]
        assert sum(not m.replayed for result in results for m in result) == 50
        batch = [
            send(c.channel_id, c.actor, "next", client_msg_id=f"r{round_}-{i}")
            for i, c in enumerate(batch)
        ]
    for channel_id in channels:
        rows = await channel_rows(pool, channel_id)
        assert [r["seq"] for r in rows] == list(range(1, 31))
        assert await last_seq_of(pool, channel_id) == 30


async def test_a_writer_that_loses_the_race_finds_the_rows_stored(
    store: ChatStore,
    pool: asyncpg.Pool,
    alice: Actor,
    channel: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both writers look for the rows before either stores them; the loser's insert fails whole
    on the unique id (its seq reservation undone), and it answers with the winner's rows."""
    await store.ensure_channel(channel)
    batch = [send(channel, alice, f"m{i}") for i in range(5)]
    caplog.set_level(logging.INFO, logger="chat_service.store")
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE", channel)
        writers = [asyncio.create_task(store.store_messages(batch)) for _ in range(2)]
        await _until_waiting_for_locks(pool, 2)
    first, second = await asyncio.gather(*writers)
    assert [m.seq for m in first] == [m.seq for m in second] == [1, 2, 3, 4, 5]
    assert sorted([first[0].replayed, second[0].replayed]) == [False, True]
    assert len({m.replayed for m in first}) == len({m.replayed for m in second}) == 1
    assert "looking it up again" in caplog.text
    assert [r["seq"] for r in await channel_rows(pool, channel)] == [1, 2, 3, 4, 5]
    assert await last_seq_of(pool, channel) == 5


async def _until_waiting_for_locks(pool: asyncpg.Pool, count: int, timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{waiting} of {count} writers waiting for the channel's lock")
        await asyncio.sleep(0.02)


async def test_a_deleted_guest_is_created_again_when_it_sends(
    store: ChatStore, pool: asyncpg.Pool, channel: int
) -> None:
    guest = guest_actor()
    (first,) = await store.store_messages([send(channel, guest, "a")])
    old_id = await pool.fetchval("SELECT id FROM users WHERE username = $1", guest.username)
    await pool.execute("DELETE FROM users WHERE username = $1", guest.username)
    (second,) = await store.store_messages([send(channel, guest, "b")])
    new_id = await pool.fetchval("SELECT id FROM users WHERE username = $1", guest.username)
    assert new_id is not None and new_id != old_id
    rows = await channel_rows(pool, channel)
    assert [(r["seq"], r["sender_id"]) for r in rows] == [(1, None), (2, new_id)]
    assert (first.seq, second.seq) == (1, 2)


async def test_a_batch_costs_the_same_statements_whatever_its_size(
    store_database_url: str, alice: Actor
) -> None:
    statements: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: statements.append(record.query))

    async def keep_session(_: asyncpg.Connection) -> None:
        """As chat-service's pool: no reset query when a connection is released."""

    pool = await db.create_pool(
        store_database_url,
        migrate_schema=False,
        min_size=1,
        max_size=1,
        init=log_queries,
        reset=keep_session,
    )
    try:
        store = ChatStore(pool)
        await store.store_messages([send(next(_channel_ids), guest_actor(), client_msg_id="k")])
        counts = []
        for size in (2, 10, 500):
            channels = [next(_channel_ids) for _ in range(min(size, 50))]
            guests = [guest_actor() for _ in range(min(size, 20))]
            batch = [
                send(
                    channels[i % len(channels)],
                    guests[i % len(guests)] if i % 2 else alice,
                    f"m{i}",
                    client_msg_id=f"k{i % 7}",
                )
                for i in range(size)
            ]
            statements.clear()
            stored = await store.store_messages(batch)
            assert sum(not m.replayed for m in stored) == len({_key(c) for c in batch})
            counts.append(len(statements))
        # Find the stored rows, resolve the new guests, reserve seqs and insert.
        assert counts == [3, 3, 3]
        # Known guests are not looked up again.
        statements.clear()
        await store.store_messages([send(channels[0], guests[1], "again")])
        assert len(statements) == 2
    finally:
        await pool.close()


def _key(cmd: SendCmd) -> tuple[int, str, str | None]:
    return (cmd.channel_id, cmd.actor.username, cmd.client_msg_id)


async def test_last_messages_of_several_channels_at_once(
    store: ChatStore, pool: asyncpg.Pool, alice: Actor, bob: Actor
) -> None:
    busy, quiet, empty, unknown = (next(_channel_ids) for _ in range(4))
    await store.store_messages(
        [send(busy, alice if i % 2 else bob, f"b{i}") for i in range(1, 8)]
        + [send(quiet, alice, "only")]
    )
    await store.ensure_channels([empty, busy])
    (first_busy,) = [m for m in (await store.last_messages(busy, 50))[0] if m.seq == 5]
    await store.react(
        message_id=first_busy.id, channel_id=busy, username=bob.username, emote="👍", add=True
    )
    views = await store.last_messages_of([busy, quiet, empty, unknown], 3)
    assert set(views) == {busy, quiet, empty, unknown}
    assert views[busy] == await store.last_messages(busy, 3)
    messages, last_seq = views[busy]
    assert [(m.seq, m.content) for m in messages] == [(5, "b5"), (6, "b6"), (7, "b7")]
    assert last_seq == 7
    assert [r.emote for r in messages[0].reactions or []] == ["👍"]
    assert messages[1].reactions == []
    assert views[quiet] == await store.last_messages(quiet, 3)
    assert [m.content for m in views[quiet][0]] == ["only"]
    assert views[empty] == ([], 0)
    assert views[unknown] == ([], 0)
    assert await last_seq_of(pool, empty) == 0  # created
    assert await last_seq_of(pool, unknown) is None  # only read: not created
    assert await store.last_messages_of([], 3) == {}
