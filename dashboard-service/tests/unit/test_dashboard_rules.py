"""Signup rules, pure: usernames and passwords."""

from __future__ import annotations

import pytest

from dashboard_service.rules import InvalidInput, check_password, clean_username, password_problems
from justchat.errors import JustchatError


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("abc", "abc"),
        ("  alice  ", "alice"),
        ("\tbob\n", "bob"),
        ("x" * 30, "x" * 30),
        ("Zoë Ünal", "Zoë Ünal"),
        ("Guest", "Guest"),
        ("Guest1x", "Guest1x"),
    ],
)
def test_clean_username_keeps_valid_names(raw: str, stored: str) -> None:
    assert clean_username(raw) == stored


@pytest.mark.parametrize("raw", ["", "ab", "  ab  ", "x" * 31, " " * 10])
def test_clean_username_enforces_length(raw: str) -> None:
    with pytest.raises(InvalidInput, match="3 to 30 characters"):
        clean_username(raw)


@pytest.mark.parametrize("raw", ["Guest1", "guest0", "GUEST123456", " gUeSt77 "])
def test_clean_username_reserves_guest_names(raw: str) -> None:
    with pytest.raises(InvalidInput, match="reserved for guests"):
        clean_username(raw)


@pytest.mark.parametrize("raw", ["nul\x00name", "bell\x07x", "new\nline"])
def test_clean_username_refuses_control_characters(raw: str) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        clean_username(raw)


def test_invalid_input_is_a_justchat_error() -> None:
    assert issubclass(InvalidInput, JustchatError)


def test_password_problems_is_empty_for_a_good_password() -> None:
    assert password_problems("Secret123") == []
    check_password("Secret123")  # must not raise


@pytest.mark.parametrize(
    ("password", "missing"),
    [
        ("Sh0rtAb", ["at least 8 characters"]),
        ("lowercase1", ["an uppercase letter"]),
        ("UPPERCASE1", ["a lowercase letter"]),
        ("NoDigitsHere", ["a digit"]),
        ("", ["at least 8 characters", "an uppercase letter", "a lowercase letter", "a digit"]),
        ("12345678", ["an uppercase letter", "a lowercase letter"]),
    ],
)
def test_password_problems_names_each_missing_rule(password: str, missing: list[str]) -> None:
    assert password_problems(password) == missing


@pytest.mark.parametrize(
    ("password", "detail"),
    [
        ("lowercase1", "Password must contain an uppercase letter."),
        ("lowercase", "Password must contain an uppercase letter and a digit."),
        ("abc", "Password must contain at least 8 characters, an uppercase letter and a digit."),
    ],
)
def test_check_password_detail_is_one_sentence(password: str, detail: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_password(password)
    assert str(caught.value) == detail
