"""chat-service: stores messages, serves history, publishes channel events."""

from chat_service.app import create_app

__all__ = ["create_app"]
