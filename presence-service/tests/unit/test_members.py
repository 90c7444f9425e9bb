"""Parsing presence hash values (``first_seen_ms|is_guest|username``) into member lists."""

from __future__ import annotations

import pytest

from justchat.wire import UserFrom
from presence_service.store import Member, member_list, parse


def value(seen_ms: int, username: str, *, guest: bool = False) -> bytes:
    return f"{seen_ms}|{int(guest)}|{username}".encode()


def test_parse() -> None:
    assert parse(b"1700000000123|0|alice") == Member(
        1700000000123, UserFrom(username="alice", is_guest=False)
    )
    assert parse(b"5|1|Guest42") == Member(5, UserFrom(username="Guest42", is_guest=True))


@pytest.mark.parametrize("username", ["a|b", "|", "||x||", "1|0|x", "|lead", "trail|"])
def test_parse_keeps_pipes_in_usernames(username: str) -> None:
    assert parse(value(7, username, guest=True)) == Member(
        7, UserFrom(username=username, is_guest=True)
    )


def test_parse_unicode_username() -> None:
    assert parse(value(1, "zoë 🐙")).user.username == "zoë 🐙"


@pytest.mark.parametrize("bad", [b"", b"12", b"12|0", b"x|0|alice"])
def test_parse_rejects_malformed_values(bad: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - split/int raise plain ValueError
        parse(bad)


def test_member_list_empty() -> None:
    assert member_list([]) == []


def test_member_list_is_ordered_by_first_join() -> None:
    values = [value(30, "carol"), value(10, "alice"), value(20, "bob", guest=True)]
    assert member_list(values) == [
        UserFrom(username="alice", is_guest=False),
        UserFrom(username="bob", is_guest=True),
        UserFrom(username="carol", is_guest=False),
    ]


def test_member_list_shows_each_user_once_at_its_earliest_connection() -> None:
    values = [value(50, "alice"), value(20, "bob"), value(10, "alice"), value(40, "alice")]
    assert [u.username for u in member_list(values)] == ["alice", "bob"]


def test_member_list_with_pipes_in_usernames() -> None:
    values = [value(1, "a|b"), value(2, "a"), value(3, "a|b"), value(4, "b|")]
    assert [u.username for u in member_list(values)] == ["a|b", "a", "b|"]


def test_member_list_does_not_confuse_prefixes() -> None:
    values = [value(1, "al"), value(2, "alice"), value(3, "al ")]
    assert [u.username for u in member_list(values)] == ["al", "alice", "al "]
