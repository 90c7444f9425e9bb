"""``/dashboard/users``: list, read, edit and delete accounts and guests; a user's messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from litestar import Controller, delete, get, patch
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotFoundException, PermissionDeniedException
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_409_CONFLICT

from dashboard_service.chat_store import ChatStore
from dashboard_service.guards import USER_NOT_FOUND
from dashboard_service.passwords import Passwords
from dashboard_service.routes._common import (
    BEARER_AUTH,
    EXAMPLE_USER,
    STAFF,
    TEXT_PATTERN,
    clamp_offset,
    is_user_id,
    offset_of,
    public,
    staff_errors,
    total_pages,
)
from dashboard_service.routes._docs import error, ok
from dashboard_service.rules import InvalidInput, check_password, clean_username
from dashboard_service.schemas import UserMessage, UserMessages, UserPublic, UsersPage, UserUpdate
from dashboard_service.store import UsernameTaken, UserRecord, UserStore

USERNAME_IN_USE: Final = "Username in use"
ADMIN_TARGET: Final = "Only an admin may change or delete an admin."
ADMIN_SETS_ROLES: Final = "Only an admin may change roles."
GUEST_ROLE: Final = "Guests cannot be given a role; they must sign up."
GUEST_PASSWORD: Final = "Guests cannot have a password; they must sign up."
OWN_ROLE: Final = "You cannot change your own role."
DELETE_SELF: Final = "You cannot delete your own account."
MAX_PAGE_SIZE: Final = 100
MAX_SEARCH_CHARS: Final = 100

_NOT_FOUND = {404: error("No user has this id", USER_NOT_FOUND)}
_EXAMPLE_MESSAGE = UserMessage(
    channel_id=7,
    sender_username="alice",
    timestamp=datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC),
    content="hello",
)

PageParam = Annotated[int, QueryParameter(ge=1, description="1-based page number")]
PageSizeParam = Annotated[
    int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"users per page, 1-{MAX_PAGE_SIZE}")
]


async def _target(users: UserStore, user_id: int) -> UserRecord:
    user = await users.by_id(user_id) if is_user_id(user_id) else None
    if user is None:
        raise NotFoundException(detail=USER_NOT_FOUND)
    return user


def _check_may_change(caller: UserRecord, target: UserRecord) -> None:
    if target.role == "admin" and caller.role != "admin":
        raise PermissionDeniedException(detail=ADMIN_TARGET)


class UsersController(Controller):
    path = "/dashboard/users"
    tags = ["dashboard: users"]
    guards = [STAFF]
    security = BEARER_AUTH

    # "/" is the route itself: /dashboard/users and /dashboard/users/ are both served.
    @get(
        "/",
        summary="List users",
        description="Accounts and guests, sorted by username (ignoring case), one page at a"
        " time. `search` keeps names containing it, ignoring case (`%`, `_` and `\\` match"
        " themselves); `registered_only=true` leaves guests out. A page beyond the last is"
        " empty.",
        responses={
            200: ok(
                "One page of users",
                UsersPage(total_users=1, total_pages=1, users=[EXAMPLE_USER]),
            ),
            **staff_errors(),
            422: error(
                "A query parameter is out of range",
                "Invalid request: page_size: Expected `int` <= 100",
            ),
        },
    )
    async def list_users(
        self,
        users: NamedDependency[UserStore],
        page: PageParam = 1,
        page_size: PageSizeParam = 10,
        registered_only: Annotated[
            bool, QueryParameter(description="true leaves guests out")
        ] = False,
        search: Annotated[
            str,
            QueryParameter(
                max_length=MAX_SEARCH_CHARS,
                pattern=TEXT_PATTERN,
                description="case-insensitive part of the username",
            ),
        ] = "",
    ) -> UsersPage:
        total, found = await users.page(
            search=search,
            registered_only=registered_only,
            limit=page_size,
            offset=offset_of(page, page_size),
        )
        return UsersPage(
            total_users=total,
            total_pages=total_pages(total, page_size),
            users=[public(user) for user in found],
        )

    @get(
        "/{user_id:int}",
        summary="Read a user",
        description="One account or guest by id.",
        responses={200: ok("The user", EXAMPLE_USER), **staff_errors(), **_NOT_FOUND},
    )
    async def get_user(
        self, user_id: FromPath[int], users: NamedDependency[UserStore]
    ) -> UserPublic:
        return public(await _target(users, user_id))

    @patch(
        "/{user_id:int}",
        summary="Edit a user",
        description="Change the username and/or the password (the signup rules apply). [ext]"
        " `role` (admin, moderator or user) may be set by admins only, never for guests, and"
        " never by admins for themselves. Only an admin may edit an admin. Absent or null"
        " fields stay as they are.",
        responses={
            200: ok("The user as stored now", EXAMPLE_USER),
            **staff_errors(),
            **_NOT_FOUND,
            409: error(
                "The username is taken, or the caller edits its own role", USERNAME_IN_USE, OWN_ROLE
            ),
            422: error(
                "A value breaks the rules",
                "Password must contain an uppercase letter and a digit.",
                GUEST_ROLE,
            ),
        },
    )
    async def update_user(
        self,
        user_id: FromPath[int],
        data: JSONBody[UserUpdate],
        users: NamedDependency[UserStore],
        passwords: NamedDependency[Passwords],
        current_user: NamedDependency[UserRecord],
    ) -> UserPublic:
        target = await _target(users, user_id)
        _check_may_change(current_user, target)
        if data.role is not None:
            if current_user.role != "admin":
                raise PermissionDeniedException(detail=ADMIN_SETS_ROLES)
            if target.is_guest:
                raise InvalidInput(GUEST_ROLE)
            if target.id == current_user.id and data.role != current_user.role:
                # Nor can the last admin demote itself: someone must be left to promote others.
                raise HTTPException(status_code=HTTP_409_CONFLICT, detail=OWN_ROLE)
        username = None if data.username is None else clean_username(data.username)
        password_hash = None
        if data.password is not None:
            if target.is_guest:
                raise InvalidInput(GUEST_PASSWORD)
            check_password(data.password)
            password_hash = await passwords.hash(data.password)
        try:
            updated = await users.update(
                user_id, username=username, password_hash=password_hash, role=data.role
            )
        except UsernameTaken as exc:
            raise HTTPException(status_code=HTTP_409_CONFLICT, detail=USERNAME_IN_USE) from exc
        if updated is None:  # deleted meanwhile
            raise NotFoundException(detail=USER_NOT_FOUND)
        return public(updated)

    @delete(
        "/{user_id:int}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Delete a user",
        description="Their messages remain, attributed by `sender_username`. Only an admin may"
        " delete an admin; nobody may delete themselves (so the last admin stays).",
        responses={
            **staff_errors(),
            **_NOT_FOUND,
            409: error("The caller tried to delete itself", DELETE_SELF),
        },
    )
    async def delete_user(
        self,
        user_id: FromPath[int],
        users: NamedDependency[UserStore],
        current_user: NamedDependency[UserRecord],
    ) -> None:
        if user_id == current_user.id:
            raise HTTPException(status_code=HTTP_409_CONFLICT, detail=DELETE_SELF)
        _check_may_change(current_user, await _target(users, user_id))
        if not await users.delete(user_id):
            raise NotFoundException(detail=USER_NOT_FOUND)

    @get(
        "/{user_id:int}/messages",
        summary="A user's messages",
        description="Messages the user sent, in every channel, newest first; `count` is their"
        " total.",
        responses={
            200: ok("One page of messages", UserMessages(count=1, messages=[_EXAMPLE_MESSAGE])),
            **staff_errors(),
            **_NOT_FOUND,
            422: error(
                "A query parameter is out of range",
                "Invalid request: limit: Expected `int` <= 100",
            ),
        },
    )
    async def user_messages(
        self,
        user_id: FromPath[int],
        users: NamedDependency[UserStore],
        chat: NamedDependency[ChatStore],
        offset: Annotated[int, QueryParameter(ge=0, description="messages to skip")] = 0,
        limit: Annotated[
            int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description=f"1-{MAX_PAGE_SIZE} messages")
        ] = 10,
    ) -> UserMessages:
        await _target(users, user_id)
        found = await chat.messages_by_sender(user_id, offset=clamp_offset(offset), limit=limit)
        return UserMessages(count=found.count, messages=found.messages)
