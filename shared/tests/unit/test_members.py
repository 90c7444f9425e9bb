"""Presence hash values (``first_seen_ms|is_guest|username``): building, parsing, member lists."""

from __future__ import annotations

import pytest

from justchat.members import Member, distinct, format_member, member_list, parse_member
from justchat.wire import UserFrom


def value(seen_ms: int, username: str, *, guest: bool = False) -> bytes:
    return f"{seen_ms}|{int(guest)}|{username}".encode()


def test_format_member() -> None:
    assert format_member(Member(1700000000123, UserFrom(username="alice", is_guest=False))) == (
        "1700000000123|0|alice"
    )
    assert format_member(Member(5, UserFrom(username="Guest42", is_guest=True))) == "5|1|Guest42"


@pytest.mark.parametrize("username", ["alice", "a|b", "|", "||x||", "1|0|x", "zoë 🐙", " "])
@pytest.mark.parametrize("guest", [False, True])
def test_format_then_parse_round_trips(username: str, guest: bool) -> None:
    member = Member(1700000000123, UserFrom(username=username, is_guest=guest))
    text = format_member(member)
    assert parse_member(text) == member
    assert parse_member(text.encode()) == member


@pytest.mark.parametrize(
    "member",
    [
        Member(-1, UserFrom(username="alice", is_guest=False)),
        Member(1, UserFrom(username="", is_guest=False)),
    ],
)
def test_format_member_rejects_what_could_not_be_parsed(member: Member) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the module's documented error
        format_member(member)


def test_parse() -> None:
    assert parse_member(b"1700000000123|0|alice") == Member(
        1700000000123, UserFrom(username="alice", is_guest=False)
    )
    assert parse_member(b"5|1|Guest42") == Member(5, UserFrom(username="Guest42", is_guest=True))
    assert parse_member("7|0|bob") == Member(7, UserFrom(username="bob", is_guest=False))


@pytest.mark.parametrize("username", ["a|b", "|", "||x||", "1|0|x", "|lead", "trail|"])
def test_parse_keeps_pipes_in_usernames(username: str) -> None:
    assert parse_member(value(7, username, guest=True)) == Member(
        7, UserFrom(username=username, is_guest=True)
    )


def test_parse_unicode_username() -> None:
    assert parse_member(value(1, "zoë 🐙")).user.username == "zoë 🐙"


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"12",
        b"12|0",
        b"12|0|",
        b"x|0|alice",
        b"-5|0|alice",
        b" 5|0|alice",
        "\u0665|0|alice".encode(),  # an Arabic-Indic digit: int() would take it, Lua would not
        b"5|2|alice",
        b"5|true|alice",
        b"5|0\xff|alice",  # not UTF-8
    ],
)
def test_parse_rejects_malformed_values(bad: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - UnicodeDecodeError has its own message
        parse_member(bad)


def test_member_list_empty() -> None:
    assert member_list([]) == []


def test_member_list_is_ordered_by_first_join() -> None:
    values = [value(30, "carol"), value(10, "alice"), value(20, "bob", guest=True)]
    assert member_list(values) == [
        UserFrom(username="alice", is_guest=False),
        UserFrom(username="bob", is_guest=True),
        UserFrom(username="carol", is_guest=False),
    ]


def test_member_list_breaks_ties_by_username() -> None:
    values = [value(10, "carol"), value(10, "alice"), value(10, "bob")]
    assert [u.username for u in member_list(values)] == ["alice", "bob", "carol"]


def test_member_list_shows_each_user_once_at_its_earliest_connection() -> None:
    values = [value(50, "alice"), value(20, "bob"), value(10, "alice"), value(40, "alice")]
    assert [u.username for u in member_list(values)] == ["alice", "bob"]


def test_member_list_with_pipes_in_usernames() -> None:
    values = [value(1, "a|b"), value(2, "a"), value(3, "a|b"), value(4, "b|")]
    assert [u.username for u in member_list(values)] == ["a|b", "a", "b|"]


def test_member_list_does_not_confuse_prefixes() -> None:
    values = [value(1, "al"), value(2, "alice"), value(3, "al ")]
    assert [u.username for u in member_list(values)] == ["al", "alice", "al "]


def test_member_list_rejects_a_malformed_value() -> None:
    with pytest.raises(ValueError, match="not a member value"):
        member_list([value(1, "alice"), b"garbage"])


def test_distinct_keeps_the_earliest_connection() -> None:
    alice = UserFrom(username="alice", is_guest=False)
    guest = UserFrom(username="Guest1", is_guest=True)
    found = distinct([Member(9, alice), Member(3, guest), Member(2, alice), Member(5, alice)])
    assert found == [Member(2, alice), Member(3, guest)]
