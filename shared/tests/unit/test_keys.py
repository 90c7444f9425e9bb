"""Redis names: one prefix for all, a ``{ch:N}`` hash tag per channel, stable partitions."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

import pytest

from justchat import keys
from justchat.keys import Keys, partition_of, partition_of_user

PREFIX = "t1234:"


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes: the first non-empty ``{...}``, else the key."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def all_names(k: Keys) -> list[str]:
    return [
        k.cmd_stream(3),
        k.lease(3),
        k.chat_replicas,
        k.dead_letters,
        k.presence_stream(3),
        k.presence_lease(3),
        k.presence_replicas,
        k.presence_dead_letters,
        k.channel_topic(8),
        k.channel_recent(8),
        k.channel_conns(8),
        k.channel_mutes(8),
        k.channel_typing(8, "alice"),
        k.members_pace(8),
        k.members_held(8),
        k.members_users(8),
        k.members_due,
        k.moderation_reply("r1"),
        k.gateway_inbox("gw1"),
        k.gateway_conns("gw1"),
        k.gateways,
        k.gateway_urls,
        k.gateway_rr,
        k.channels,
        k.active_channels,
        k.online_conns,
        k.online_users,
        k.send_rate("alice"),
        k.guest_seq,
    ]


def test_all_names_lists_every_builder() -> None:
    builders = {n for n in vars(Keys) if not n.startswith("_")} - {"prefix", "channel_of_topic"}
    assert len(all_names(Keys(PREFIX))) == len(builders)


def test_default_prefix() -> None:
    assert keys.DEFAULT_PREFIX == "jc:"
    assert Keys().prefix == "jc:"
    assert Keys().channels == "jc:channels"


def test_every_name_starts_with_the_prefix_and_is_unique() -> None:
    names = all_names(Keys(PREFIX))
    assert all(name.startswith(PREFIX) for name in names)
    assert len(set(names)) == len(names)


def test_names_match_the_schema_table() -> None:
    k = Keys(PREFIX)
    assert k.cmd_stream(3) == "t1234:cmd:3"
    assert k.lease(3) == "t1234:lease:cmd:3"
    assert k.presence_stream(3) == "t1234:presence:3"
    assert k.presence_lease(3) == "t1234:lease:presence:3"
    assert k.channel_topic(8) == "t1234:{ch:8}:events"
    assert k.channel_recent(8) == "t1234:{ch:8}:recent"
    assert k.channel_conns(8) == "t1234:{ch:8}:conns"
    assert k.channel_typing(8, "bob") == "t1234:{ch:8}:typing:bob"
    assert k.gateway_inbox("g") == "t1234:gw:g:inbox"
    assert k.gateway_conns("g") == "t1234:gw:g:conns"
    assert k.guest_seq == "t1234:guest-seq"
    assert k.moderation_reply("r1") == "t1234:reply:r1"


def doc_pattern(name: str) -> re.Pattern[str]:
    """A documented name such as ``gw:{id}:conns`` as a regex over built names."""
    holes = {"{p}": r"\d+", "{id}": r"[^:]+", "{user}": r".+", "{ch:N}": r"\{ch:-?\d+\}"}
    parts = re.split(r"(\{p\}|\{id\}|\{user\}|\{ch:N\})", name)
    return re.compile("".join(holes.get(part, re.escape(part)) for part in parts))


def test_the_docstring_table_matches_the_names_built() -> None:
    documented = re.findall(r"^\| ``([^`]+)``", keys.__doc__ or "", re.MULTILINE)
    patterns = [doc_pattern(name) for name in documented]
    built = [name.removeprefix(PREFIX) for name in all_names(Keys(PREFIX))]
    assert len(documented) == len(built)
    for name in built:
        assert [p.pattern for p in patterns if p.fullmatch(name)], f"{name} is not documented"
    for pattern in patterns:
        assert any(pattern.fullmatch(name) for name in built), f"{pattern.pattern} is never built"


@pytest.mark.parametrize(
    "builder",
    [
        lambda k, c: k.channel_topic(c),
        lambda k, c: k.channel_recent(c),
        lambda k, c: k.channel_conns(c),
        lambda k, c: k.channel_typing(c, "a{b}c"),
        lambda k, c: k.channel_mutes(c),
    ],
    ids=["topic", "recent", "conns", "typing", "mutes"],
)
@pytest.mark.parametrize("channel_id", [0, 8, -5, 2**31 - 1, -(2**31)])
def test_channel_keys_share_one_hash_tag(
    builder: Callable[[Keys, int], str], channel_id: int
) -> None:
    key = builder(Keys(PREFIX), channel_id)
    assert hash_tag(key) == f"ch:{channel_id}"


def test_different_channels_have_different_tags() -> None:
    k = Keys(PREFIX)
    assert hash_tag(k.channel_conns(1)) != hash_tag(k.channel_conns(10))


@pytest.mark.parametrize("channel_id", [0, 1, 8, 42, -1, -8, 2**31 - 1, -(2**31), 10**12])
def test_channel_of_topic_round_trip(channel_id: int) -> None:
    k = Keys(PREFIX)
    assert k.channel_of_topic(k.channel_topic(channel_id)) == channel_id


@pytest.mark.parametrize(
    "topic",
    [
        "t1234:{ch:8}:recent",
        "t1234:{ch:8}:conns",
        "t1234:{ch:}:events",
        "t1234:{ch:abc}:events",
        "t1234:{ch:8:events",
        "t1234:gw:g:inbox",
        "jc:{ch:8}:events",  # another deployment's prefix
        "{ch:8}:events",
        "",
    ],
)
def test_channel_of_topic_rejects_other_names(topic: str) -> None:
    assert Keys(PREFIX).channel_of_topic(topic) is None


def test_channel_of_topic_with_the_default_prefix() -> None:
    assert Keys().channel_of_topic("jc:{ch:-3}:events") == -3
    assert Keys().channel_of_topic("t1234:{ch:3}:events") is None


def test_partition_of_is_pinned() -> None:
    # Every process, and every release, must agree on which partition owns a channel.
    assert [partition_of(c, 8) for c in (0, 1, 2, 3, 8, -1)] == [1, 7, 5, 3, 3, 2]
    assert partition_of(123, 1024) == 978
    assert partition_of(2**31 - 1, 16) == 0
    assert partition_of(8, 8) == zlib.crc32(b"8") % 8
    assert partition_of(5, 1) == 0


@pytest.mark.parametrize("partitions", [1, 2, 7, 8, 64, 1024])
def test_partition_of_is_stable_and_in_range(partitions: int) -> None:
    channel_ids = [*range(-300, 300), 2**31 - 1, -(2**31)]
    first = [partition_of(c, partitions) for c in channel_ids]
    assert first == [partition_of(c, partitions) for c in channel_ids]
    assert all(0 <= p < partitions for p in first)
    if partitions <= 64:
        assert set(first) == set(range(partitions))  # every partition gets channels


def test_partition_of_user_is_pinned() -> None:
    assert [partition_of_user(u, 8) for u in ("alice", "bob", "Guest1", "")] == [6, 2, 7, 5]
    assert partition_of_user("alice", 1024) == 502
    assert partition_of_user("alice", 8) == zlib.crc32(b"user:alice") % 8


@pytest.mark.parametrize("partitions", [1, 3, 8, 1024])
def test_partition_of_user_is_stable_and_in_range(partitions: int) -> None:
    names = [f"user{i}" for i in range(500)] + ["zoë 🐙", "a|b", ""]
    first = [partition_of_user(n, partitions) for n in names]
    assert first == [partition_of_user(n, partitions) for n in names]
    assert all(0 <= p < partitions for p in first)
    if partitions <= 8:
        assert set(first) == set(range(partitions))


def test_user_and_channel_partitions_are_independent_spaces() -> None:
    # "user:8" and channel 8 hash differently: a username never aliases a channel id.
    assert zlib.crc32(b"user:8") != zlib.crc32(b"8")
    assert partition_of_user("8", 1024) == zlib.crc32(b"user:8") % 1024
