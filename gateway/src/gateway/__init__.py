"""The WebSocket gateway: terminates client connections, talks to Redis only."""

from gateway.app import create_app

__all__ = ["create_app"]
