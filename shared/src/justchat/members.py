"""Channel members as presence-service stores them: one value per connection; pure, no I/O.

Each channel's connections are the Redis hash ``{ch:N}:conns`` (see ``justchat.keys``): one
field ``gateway|conn`` per connection, whose value is ``first_seen_ms|is_guest|username``:

- ``first_seen_ms``: when the connection joined, in Unix milliseconds (ASCII digits);
- ``is_guest``: ``1`` for a guest, ``0`` for an account;
- ``username``: everything after the second ``|``, never empty. Usernames may contain ``|``
  themselves, so only the first two separate fields.

A user with several connections (tabs, gateways) has several values; a member list shows it
once, at its earliest connection. presence-service writes the values and reads them back in its
Lua scripts (pattern ``^%d+|[01]|(.*)$``), dashboard-service only reads them: a change to the
format here must change those scripts too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from msgspec import Struct

from justchat.wire import UserFrom

__all__ = ["Member", "distinct", "format_member", "member_list", "parse_member"]

_SEP: Final = "|"


class Member(Struct, frozen=True):
    """One connection's entry: when it joined the channel, and whose it is."""

    first_seen_ms: int
    user: UserFrom


def format_member(member: Member) -> str:
    """The hash value for ``member``; ``ValueError`` if it could not be parsed back."""
    if member.first_seen_ms < 0:
        raise ValueError(f"first_seen_ms must not be negative: {member.first_seen_ms}")
    if not member.user.username:
        raise ValueError("a member needs a username")
    return f"{member.first_seen_ms}{_SEP}{int(member.user.is_guest)}{_SEP}{member.user.username}"


def parse_member(value: bytes | str) -> Member:
    """One hash value (as Redis returns it, or decoded); ``ValueError`` if it is malformed."""
    # UnicodeDecodeError is a ValueError too: invalid UTF-8 is malformed like anything else.
    text = value.decode() if isinstance(value, bytes) else value
    seen, _, rest = text.partition(_SEP)
    guest, _, username = rest.partition(_SEP)
    if not (seen.isascii() and seen.isdigit()) or guest not in ("0", "1") or not username:
        raise ValueError(f"not a member value (first_seen_ms|is_guest|username): {text!r}")
    return Member(int(seen), UserFrom(username=username, is_guest=guest == "1"))


def distinct(members: Iterable[Member]) -> list[Member]:
    """Each user once, at its earliest connection; ordered by that time, then by username."""
    first: dict[str, Member] = {}
    for member in members:
        known = first.get(member.user.username)
        if known is None or member.first_seen_ms < known.first_seen_ms:
            first[member.user.username] = member
    return sorted(first.values(), key=lambda m: (m.first_seen_ms, m.user.username))


def member_list(values: Iterable[bytes | str]) -> list[UserFrom]:
    """The users of a channel's hash values, each once, in the order they first joined.

    ``ValueError`` if any value is malformed.
    """
    return [member.user for member in distinct(map(parse_member, values))]
