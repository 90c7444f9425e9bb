"""Password hashing in worker threads: the real argon2id, no servers."""

from __future__ import annotations

from dashboard_service.passwords import Passwords


async def test_hash_then_verify() -> None:
    passwords = await Passwords.create(max_parallel=2)
    stored = await passwords.hash("Secret123")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "Secret123") is True
    assert await passwords.verify(stored, "Secret124") is False


async def test_no_hash_never_verifies() -> None:
    passwords = await Passwords.create(max_parallel=1)
    for attempt in ["", "Secret123", "anything"]:
        assert await passwords.verify(None, attempt) is False
