"""The moderation audit log (written by chat-service), filtered and paged for the dashboard."""

from __future__ import annotations

import asyncpg
from msgspec import Struct

from dashboard_service.schemas import AuditEntry


class AuditFilter(Struct, frozen=True, kw_only=True):
    """Exact matches; None leaves a column unfiltered. All given filters must hold."""

    actor: str | None = None
    target: str | None = None
    action: str | None = None
    channel_id: int | None = None


class AuditStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def page(
        self, where: AuditFilter, *, limit: int, offset: int
    ) -> tuple[int, list[AuditEntry]]:
        """(how many entries match, the ``limit`` of them after ``offset``) newest first."""
        condition = (
            "($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR target = $2)"
            " AND ($3::text IS NULL OR action = $3) AND ($4::integer IS NULL OR channel_id = $4)"
        )
        args = (where.actor, where.target, where.action, where.channel_id)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM audit_log WHERE {condition}", *args
            )
            rows = await conn.fetch(
                "SELECT id, actor, action, target, channel_id, reason, expires_at, created_at"
                f" FROM audit_log WHERE {condition} ORDER BY created_at DESC, id DESC"
                " LIMIT $5 OFFSET $6",
                *args,
                limit,
                offset,
            )
        entries = [
            AuditEntry(
                id=row["id"],
                actor=row["actor"],
                action=row["action"],
                target=row["target"],
                channel_id=row["channel_id"],
                reason=row["reason"],
                expires_at=row["expires_at"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
        return total, entries
