"""The REST calls a chat client needs before it connects: sign up and log in (``/api/v1/auth``).

The standard library's HTTP client, run in a thread, keeps ``justchat`` free of an HTTP
dependency for two requests per session.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from justchat.errors import AuthError, JustchatError


class RequestFailed(JustchatError):
    """The REST API refused a request (or could not be reached: ``status`` 0)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.status = status
        self.detail = detail


async def login(api_url: str, username: str, password: str, *, timeout_s: float = 10.0) -> str:
    """Log in and return the bearer token (``hello`` takes it as ``token``).

    Args:
        api_url: the REST API's root, e.g. ``http://127.0.0.1:8000/api/v1``.

    Raises:
        AuthError: wrong username or password.
        RequestFailed: any other refusal, or the API cannot be reached.
    """
    form = urllib.parse.urlencode({"username": username, "password": password}).encode()
    body = await _post(
        f"{api_url.rstrip('/')}/auth/login", form, "application/x-www-form-urlencoded", timeout_s
    )
    token = body.get("access_token")
    if not isinstance(token, str):
        raise RequestFailed(200, f"login answered without a token: {body}")
    return token


async def signup(
    api_url: str, username: str, password: str, *, timeout_s: float = 10.0
) -> dict[str, Any]:
    """Create an account; returns it (``id``, ``username``, ``is_guest``, ``created_at``, ...).

    Raises:
        RequestFailed: 409 for a name in use, 422 naming the signup rule that was broken.
    """
    data = json.dumps({"username": username, "password": password}).encode()
    return await _post(f"{api_url.rstrip('/')}/auth/signup", data, "application/json", timeout_s)


async def _post(url: str, data: bytes, content_type: str, timeout_s: float) -> dict[str, Any]:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise RequestFailed(0, f"not an http(s) URL: {url!r}")
    status, raw = await asyncio.to_thread(_post_blocking, url, data, content_type, timeout_s)
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"detail": raw[:200].decode(errors="replace")}
    if not isinstance(body, dict):
        body = {"detail": str(body)}
    if status == 401:
        raise AuthError(str(body.get("detail", "Not authenticated")))
    if not 200 <= status < 300:
        raise RequestFailed(status, str(body.get("detail", body)))
    return body


def _post_blocking(url: str, data: bytes, content_type: str, timeout_s: float) -> tuple[int, bytes]:
    request = urllib.request.Request(  # the scheme was checked by the caller
        url, data=data, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RequestFailed(0, f"cannot reach {url}: {reason}") from None
