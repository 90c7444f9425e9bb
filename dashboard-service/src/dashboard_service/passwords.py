"""Password hashing off the event loop, with bounded parallelism."""

from __future__ import annotations

import os
import secrets

import anyio
import anyio.to_thread

from justchat.auth import hash_password, verify_password


class Passwords:
    """Hash and verify in worker threads; build with ``await Passwords.create()``.

    Each argon2id hash takes tens of milliseconds and 64 MiB, so a burst of logins must not get
    anyio's default 40 threads: the limiter keeps it to one hash per CPU.
    """

    def __init__(self, dummy_hash: str, limiter: anyio.CapacityLimiter) -> None:
        self._dummy_hash = dummy_hash
        self._limiter = limiter

    @classmethod
    async def create(cls, max_parallel: int | None = None) -> Passwords:
        limiter = anyio.CapacityLimiter(max_parallel or os.cpu_count() or 1)
        # Verified against when a user has no password, so that unknown names answer as slowly as
        # known ones and cannot be told apart by timing.
        dummy = await anyio.to_thread.run_sync(
            hash_password, secrets.token_urlsafe(16), limiter=limiter
        )
        return cls(dummy, limiter)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(hash_password, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; always False (after the same work) without a hash."""
        ok = await anyio.to_thread.run_sync(
            verify_password, password_hash or self._dummy_hash, password, limiter=self._limiter
        )
        return ok and password_hash is not None
