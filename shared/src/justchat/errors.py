"""The root of every exception justchat raises on purpose."""


class JustchatError(Exception):
    """Base class: catch this to catch anything justchat raises deliberately."""


class ConfigError(JustchatError):
    """The configuration is invalid; the process stops at start-up with this message."""


class ProtocolError(JustchatError):
    """A client frame broke the protocol; ``detail`` is the text sent back in an error frame."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class AuthError(JustchatError):
    """A token or credential was rejected; the message says why."""
