"""Account rules shared by signup and (later) the dashboard's edits; pure, no I/O."""

from __future__ import annotations

import re
from typing import Final

from justchat.errors import JustchatError

USERNAME_MIN_CHARS: Final = 3
USERNAME_MAX_CHARS: Final = 30
PASSWORD_MIN_CHARS: Final = 8

# Gateways name guests Guest<n>; an account with such a name could be mistaken for a guest.
_GUEST_NAME: Final = re.compile(r"guest\d+", re.IGNORECASE)


class InvalidInput(JustchatError):
    """A request value broke a rule; the message is the ``detail`` the client sees."""


def clean_username(raw: str) -> str:
    """The username to store (surrounding whitespace removed); ``InvalidInput`` if it is unfit."""
    name = raw.strip()
    if not USERNAME_MIN_CHARS <= len(name) <= USERNAME_MAX_CHARS:
        raise InvalidInput(
            f"Username must be {USERNAME_MIN_CHARS} to {USERNAME_MAX_CHARS} characters long"
            f" (without surrounding spaces); it has {len(name)}."
        )
    # Control characters (NUL above all, which PostgreSQL text rejects) have no place in a name.
    if not name.isprintable():
        raise InvalidInput("Username must not contain control characters.")
    if _GUEST_NAME.fullmatch(name):
        raise InvalidInput("Usernames of the form Guest<number> are reserved for guests.")
    return name


def password_problems(password: str) -> list[str]:
    """What ``password`` lacks, in words; empty when it satisfies every rule."""
    missing = []
    if len(password) < PASSWORD_MIN_CHARS:
        missing.append(f"at least {PASSWORD_MIN_CHARS} characters")
    if not any(c.isupper() for c in password):
        missing.append("an uppercase letter")
    if not any(c.islower() for c in password):
        missing.append("a lowercase letter")
    if not any(c.isdigit() for c in password):
        missing.append("a digit")
    return missing


def check_password(password: str) -> None:
    """Raise ``InvalidInput`` naming everything the password lacks."""
    missing = password_problems(password)
    if missing:
        listed = " and ".join([", ".join(missing[:-1]), missing[-1]] if missing[1:] else missing)
        raise InvalidInput(f"Password must contain {listed}.")
