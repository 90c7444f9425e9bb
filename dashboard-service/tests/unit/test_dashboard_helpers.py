"""Pure helpers of the dashboard routes: LIKE escaping, presence values, paging; no servers."""

from __future__ import annotations

import pytest

from dashboard_service.presence import LiveMember, distinct_members, parse_member
from dashboard_service.routes._common import is_channel_id, is_user_id, offset_of, total_pages
from dashboard_service.store import like_pattern


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("alice", "%alice%"),
        ("", "%%"),
        ("50%", "%50\\%%"),
        ("a_b", "%a\\_b%"),
        ("back\\slash", "%back\\\\slash%"),
        ("%_\\", "%\\%\\_\\\\%"),
    ],
)
def test_like_pattern_escapes_wildcards(text: str, pattern: str) -> None:
    assert like_pattern(text) == pattern


@pytest.mark.parametrize(
    ("value", "member"),
    [
        (
            b"1700000000000|0|alice",
            LiveMember(username="alice", is_guest=False, first_seen_ms=1700000000000),
        ),
        (b"5|1|Guest42", LiveMember(username="Guest42", is_guest=True, first_seen_ms=5)),
        ("7|0|a|b", LiveMember(username="a|b", is_guest=False, first_seen_ms=7)),
        (b"x|0|alice", None),
        (b"5|2|alice", None),
        (b"5|0|", None),
        (b"garbage", None),
    ],
)
def test_parse_member(value: bytes | str, member: LiveMember | None) -> None:
    assert parse_member(value) == member


def test_distinct_members_keeps_each_user_once_by_first_arrival() -> None:
    values = [b"30|0|carol", b"20|0|alice", b"10|1|Guest1", b"5|0|alice", b"bad", b"30|0|bob"]
    assert [(m.username, m.first_seen_ms) for m in distinct_members(values)] == [
        ("alice", 5),
        ("Guest1", 10),
        ("bob", 30),
        ("carol", 30),
    ]


@pytest.mark.parametrize(
    ("total", "size", "pages"), [(0, 10, 0), (1, 10, 1), (10, 10, 1), (11, 10, 2), (5, 1, 5)]
)
def test_total_pages(total: int, size: int, pages: int) -> None:
    assert total_pages(total, size) == pages


def test_offsets_stay_in_range() -> None:
    assert offset_of(1, 10) == 0
    assert offset_of(3, 10) == 20
    assert offset_of(10**30, 100) == 2**63 - 1


def test_id_ranges() -> None:
    assert is_channel_id(2**31 - 1)
    assert not is_channel_id(2**31)
    assert is_user_id(2**63 - 1)
    assert not is_user_id(2**63)
