"""presence-service: who is in which channel and who is typing, kept in Redis with TTLs."""

from presence_service.app import create_app

__all__ = ["create_app"]
