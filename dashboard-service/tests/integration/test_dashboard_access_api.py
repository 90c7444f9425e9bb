"""Every dashboard route: staff only (401 without a token, 403 for users and guests), and
every route of the API documented with a summary, a description and a 2xx example."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx
import pytest


class Caller(Protocol):
    id: int
    username: str
    role: str
    is_guest: bool
    headers: dict[str, str]


MakeUser = Callable[..., Awaitable[Caller]]

FORBIDDEN = "You don't have permission to access this resource."
# (method, path template, JSON body): {user} is a user's id, {channel} an existing channel.
DASHBOARD = [
    ("GET", "/api/v1/dashboard/users/", None),
    ("GET", "/api/v1/dashboard/users", None),
    ("GET", "/api/v1/dashboard/users/{user}", None),
    ("PATCH", "/api/v1/dashboard/users/{user}", {}),
    ("DELETE", "/api/v1/dashboard/users/{user}", None),
    ("GET", "/api/v1/dashboard/users/{user}/messages", None),
    ("GET", "/api/v1/dashboard/channels/active", None),
    ("GET", "/api/v1/dashboard/channels/members/{channel}", None),
    ("GET", "/api/v1/dashboard/channels/{channel}/sanctions", None),
    ("POST", "/api/v1/dashboard/channels/{channel}/sanctions", {"username": "x", "kind": "mute"}),
    ("DELETE", "/api/v1/dashboard/channels/{channel}/sanctions/mute/x", None),
    ("GET", "/api/v1/dashboard/audit", None),
    ("GET", "/api/v1/dashboard/dead-letters", None),
    ("GET", "/api/v1/dashboard/dead-letters/summary", None),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in DASHBOARD]


async def call(
    client: httpx.AsyncClient,
    route: tuple[str, str, Any],
    headers: dict[str, str],
    user_id: int,
    channel_id: int,
) -> httpx.Response:
    method, template, body = route
    path = template.format(user=user_id, channel=channel_id)
    return await client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize("route", DASHBOARD, ids=ROUTE_IDS)
async def test_no_token_is_401(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    route: tuple[str, str, Any],
) -> None:
    target = await make_user()
    for headers in [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}]:
        response = await call(client, route, headers, target.id, await create_channel())
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "Not authenticated"}
        assert response.headers["www-authenticate"] == "Bearer"
    bad = await call(
        client, route, {"Authorization": "Bearer not.a.jwt"}, target.id, await create_channel()
    )
    assert bad.status_code == 401
    assert bad.json() == {"detail": "Could not validate credentials"}


@pytest.mark.parametrize("route", DASHBOARD, ids=ROUTE_IDS)
@pytest.mark.parametrize("role", ["user", "guest"])
async def test_users_and_guests_are_403(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    route: tuple[str, str, Any],
    role: str,
) -> None:
    caller = await make_user(is_guest=role == "guest")
    assert caller.role == role
    target = await make_user()
    response = await call(client, route, caller.headers, target.id, await create_channel())
    assert response.status_code == 403, response.text
    assert response.json() == {"detail": FORBIDDEN}


@pytest.mark.parametrize("route", DASHBOARD, ids=ROUTE_IDS)
@pytest.mark.parametrize("role", ["moderator", "admin"])
async def test_staff_get_through(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    create_channel: Callable[[], Awaitable[int]],
    route: tuple[str, str, Any],
    role: str,
) -> None:
    caller = await make_user(role)
    target = await make_user()
    response = await call(client, route, caller.headers, target.id, await create_channel())
    # Past the guard; "x" in the sanction routes is no user, hence their 404.
    expected = 404 if "sanctions" in route[1] and route[0] != "GET" else None
    if expected:
        assert response.status_code == expected, response.text
        assert response.json() == {"detail": "User not found"}
    else:
        assert 200 <= response.status_code < 300, response.text


async def test_access_is_checked_before_the_input(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Nobody learns the validation rules, or whether a user exists, before being let in."""
    caller = await make_user()
    invalid = [
        ("PATCH", "/api/v1/dashboard/users/1", [1]),
        ("GET", "/api/v1/dashboard/users?page=0", None),
        ("GET", f"/api/v1/dashboard/users/{2**62}", None),
        ("DELETE", "/api/v1/dashboard/channels/1/sanctions/kick/x", None),
        ("GET", "/api/v1/dashboard/audit?action=warn", None),
    ]
    for method, path, body in invalid:
        anonymous = await client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
        plain = await client.request(method, path, json=body, headers=caller.headers)
        assert plain.status_code == 403, (method, path)
        assert plain.json() == {"detail": FORBIDDEN}


# -- OpenAPI -------------------------------------------------------------------------------------


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


async def test_openapi_every_route_has_a_summary_description_and_2xx_example(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/api/v1/openapi.json")).json()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) == 20  # the set itself is pinned in test_dashboard_ops_api.py
    for key, operation in operations:
        assert operation.get("summary"), key
        assert operation.get("description"), key
        successes = {
            code: response
            for code, response in operation["responses"].items()
            if code.startswith("2")
        }
        assert successes, key
        for code, response in successes.items():
            assert response.get("description"), (key, code)
            if code == "204":
                assert not response.get("content"), key  # nothing to exemplify
                continue
            [(_, media)] = response["content"].items()
            assert media.get("examples"), (key, code)
            assert all("value" in example for example in media["examples"].values())
        if key.startswith(("GET /api/v1/dashboard", "POST /api/v1/dashboard")):
            assert operation["security"] == [{"bearer": []}], key
            assert {"401", "403"} <= set(operation["responses"]), key


async def test_openapi_examples_match_the_schemas(client: httpx.AsyncClient) -> None:
    """Each JSON example has exactly the properties its schema names, all of them required."""
    schema = (await client.get("/api/v1/openapi.json")).json()
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                media = (response.get("content") or {}).get("application/json")
                if not media or "$ref" not in media["schema"]:
                    continue
                target = resolve(schema, media["schema"])
                for example in (media.get("examples") or {}).values():
                    assert set(example["value"]) == set(target["properties"]), (
                        method,
                        path,
                        code,
                    )


async def test_openapi_documents_the_dashboard_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/v1/openapi.json")).json()

    def details(path: str, method: str, code: str) -> list[str]:
        media = schema["paths"][path][method]["responses"][code]["content"]["application/json"]
        return [example["value"]["detail"] for example in media["examples"].values()]

    users = "/api/v1/dashboard/users/{user_id}"
    assert details(users, "get", "404") == ["User not found"]
    assert "Username in use" in details(users, "patch", "409")
    assert details(users, "get", "403") == [FORBIDDEN]
    members = "/api/v1/dashboard/channels/members/{channel_id}"
    assert details(members, "get", "404") == ["Channel doesn't exist"]
    sanctions = "/api/v1/dashboard/channels/{channel_id}/sanctions"
    for method in ("post", "delete"):
        assert "You don't have permission to run this command." in details(
            sanctions if method == "post" else f"{sanctions}/{{kind}}/{{username}}", method, "403"
        )
