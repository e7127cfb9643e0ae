"""Optional HTTP basic auth. Off unless users are configured, from a file of `user:password` lines or from the
environment variable HEADWATER_REGISTRY_USERS (`user:password,user2:password2`).

Or API keys and OIDC tokens (headwater.auth, the `auth` section of `--auth-file`): reads need scope
`registry:read`, writes `registry:write`; refusals in the registry's error shape."""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict

from schemas.registry.errors import RegistryError

USERS_ENV = "HEADWATER_REGISTRY_USERS"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AuthConfigError(ValueError):
    """The users file or variable is malformed."""


def _parse_pairs(entries: list[str], origin: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise AuthConfigError(f"{origin} entry {number} is not user:password")
        users[user] = password
    return users


def load_users(users_file: Path | None) -> dict[str, str]:
    users: dict[str, str] = {}
    if users_file is not None:
        if not users_file.is_file():
            raise AuthConfigError(f"users file {users_file} does not exist")
        users.update(_parse_pairs(users_file.read_text(encoding="utf-8").splitlines(), str(users_file)))
    from_env = os.environ.get(USERS_ENV)
    if from_env:
        users.update(_parse_pairs(from_env.split(","), USERS_ENV))
    return users


def basic_auth_middleware(users: dict[str, str]) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or _authorised(request.headers.get("Authorization", ""), users):
            return await handler(request)
        raise RegistryError(401, 401, "Unauthorized: valid HTTP basic auth credentials are required")

    return check


def _authorised(header: str, users: dict[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = users.get(user)
    return expected is not None and hmac.compare_digest(expected.encode(), password.encode())


def registry_scopes(request: web.Request) -> list[str]:
    return ["registry:read" if request.method in READ_METHODS else "registry:write"]


def registry_refusal(status: int, reason: str, headers: CIMultiDict[str]) -> web.StreamResponse:
    """Confluent's error body: `error_code` is the status followed by 01 (40101, 40301, 42901, 50301)."""
    return web.json_response({"error_code": status * 100 + 1, "message": reason}, status=status, headers=headers)
