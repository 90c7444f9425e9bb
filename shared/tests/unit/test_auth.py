"""JWT (HS256) tokens and argon2id password hashes."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from justchat import auth
from justchat.errors import AuthError, JustchatError
from justchat.settings import generate_secret

SECRET = generate_secret()
OTHER_SECRET = generate_secret()


def token(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "user_id": 7,
        "username": "alice",
        "role": "user",
        "secret": SECRET,
        "ttl_s": 900,
    }
    args.update(overrides)
    return auth.create_token(**args)


def raw_token(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def reason(bad: str, secret: str = SECRET) -> str:
    with pytest.raises(AuthError) as caught:
        auth.verify_token(bad, secret)
    assert isinstance(caught.value, JustchatError)
    return str(caught.value)


def test_round_trip() -> None:
    now = int(time.time())
    claims = auth.verify_token(token(now=now), SECRET)
    assert claims == auth.Claims(user_id=7, username="alice", role="user", expires_at=now + 900)


@pytest.mark.parametrize("role", auth.ROLES)
def test_round_trip_every_role(role: str) -> None:
    assert auth.verify_token(token(role=role), SECRET).role == role


def test_token_is_hs256_with_decimal_sub() -> None:
    encoded = token(user_id=12345, now=1_700_000_000, ttl_s=60)
    assert jwt.get_unverified_header(encoded)["alg"] == "HS256"
    payload = jwt.decode(encoded, options={"verify_signature": False})
    assert payload == {
        "sub": "12345",
        "username": "alice",
        "role": "user",
        "iat": 1_700_000_000,
        "exp": 1_700_000_060,
    }


def test_expired_token() -> None:
    assert reason(token(now=time.time() - 3600, ttl_s=60)) == "token expired"


def test_token_expiring_in_the_future_is_valid() -> None:
    claims = auth.verify_token(token(now=time.time() - 3600, ttl_s=3660), SECRET)
    assert claims.expires_at > time.time()


def test_wrong_secret() -> None:
    assert reason(token(), OTHER_SECRET) == "invalid token"


def test_tampered_payload() -> None:
    header, _, signature = token().split(".")
    forged = raw_token(
        {"sub": "1", "username": "admin", "role": "admin", "exp": int(time.time()) + 60},
        OTHER_SECRET,
    ).split(".")[1]
    assert reason(f"{header}.{forged}.{signature}") == "invalid token"


@pytest.mark.parametrize("bad", ["", "garbage", "a.b.c", "a.b"])
def test_not_a_token(bad: str) -> None:
    assert reason(bad) == "invalid token"


def test_other_algorithms_are_refused() -> None:
    claims = {"sub": "7", "username": "alice", "exp": int(time.time()) + 60}
    assert reason(raw_token(claims, algorithm="HS512")) == "invalid token"
    unsigned = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    assert reason(unsigned) == "invalid token"


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_required_claims(missing: str) -> None:
    claims = {"sub": "7", "username": "alice", "exp": int(time.time()) + 60}
    del claims[missing]
    assert reason(raw_token(claims)) == "invalid token"


@pytest.mark.parametrize("sub", ["alice", "-7", "7.0", "0x7", " 7", "", "7a", "7\n", "+7"])
def test_non_decimal_sub(sub: str) -> None:
    claims = {"sub": sub, "username": "alice", "exp": int(time.time()) + 60}
    assert reason(raw_token(claims)) == "invalid subject"


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param("\u0662", id="arabic-indic-2"),  # str.isdecimal() says yes; int() gives 2
        pytest.param("\uff17", id="fullwidth-7"),
        pytest.param("1\u0660", id="arabic-indic-10"),
        pytest.param("9" * 30, id="30-digits"),
        pytest.param(str(2**63), id="2**63"),
        pytest.param("0", id="zero"),  # ids start at 1
        pytest.param("007", id="leading-zeros"),  # one id, one spelling
    ],
)
def test_sub_outside_the_user_id_column_is_refused(sub: str) -> None:
    claims = {"sub": sub, "username": "alice", "exp": int(time.time()) + 60}
    assert reason(raw_token(claims)) == "invalid subject"


@pytest.mark.parametrize("user_id", [1, 10, 2**31, 2**63 - 1])
def test_every_bigint_user_id_round_trips(user_id: int) -> None:
    assert auth.verify_token(token(user_id=user_id), SECRET).user_id == user_id


def test_integer_sub_is_refused() -> None:
    # RFC 7519: sub is a string; PyJWT rejects a number itself.
    claims = {"sub": 7, "username": "alice", "exp": int(time.time()) + 60}
    assert reason(raw_token(claims)) == "invalid token"


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "user"},  # no username
        {"username": 5},
        {"username": "alice", "role": "superuser"},
        {"username": "alice", "role": None},
        {"username": ""},
        {"username": "a\u0000"},  # it would be stored as the sender's name
        {"username": "a" * 65},
        {"username": "alice", "exp": 10**30},  # beyond any clock, and beyond int64
    ],
)
def test_invalid_claims(claims: dict[str, Any]) -> None:
    full = {"sub": "7", "exp": int(time.time()) + 60, **claims}
    assert reason(raw_token(full)) == "invalid claims"


def test_missing_role_means_user() -> None:
    claims = {"sub": "7", "username": "alice", "exp": int(time.time()) + 60}
    assert auth.verify_token(raw_token(claims), SECRET).role == "user"


def test_password_hash_and_verify() -> None:
    hashed = auth.hash_password("Secret123")
    assert hashed.startswith("$argon2id$")
    assert "Secret123" not in hashed
    assert auth.verify_password(hashed, "Secret123") is True
    assert auth.verify_password(hashed, "secret123") is False
    assert auth.verify_password(hashed, "") is False


def test_password_hashes_are_salted() -> None:
    first, second = auth.hash_password("Secret123"), auth.hash_password("Secret123")
    assert first != second
    assert auth.verify_password(second, "Secret123") is True


@pytest.mark.parametrize("bad_hash", ["", "not a hash", "$argon2id$v=19$broken"])
def test_verify_against_a_broken_hash_is_false(bad_hash: str) -> None:
    assert auth.verify_password(bad_hash, "Secret123") is False


def test_unicode_passwords() -> None:
    hashed = auth.hash_password("Pässwörd1 🔑")
    assert auth.verify_password(hashed, "Pässwörd1 🔑") is True
    assert auth.verify_password(hashed, "Passwort1 🔑") is False
