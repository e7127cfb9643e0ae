"""The aiohttp middleware both ingest and the registry mount: authenticate (401), rate-limit per principal (429),
then check the scopes the route needs (403). Refusals carry a one-line reason; logs name the principal and the
reason code, never a key or token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from headwater.auth.authenticator import Authenticator
from headwater.auth.config import AuthSettings
from headwater.auth.principal import AuthUnavailable, Principal, Unauthenticated
from headwater.auth.rate_limit import PrincipalRateLimits

log = logging.getLogger(__name__)

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("headwater_principal", Principal)
JWKS_RETRY_AFTER_SECONDS = 5

# the scopes a request needs, all of them (e.g. `ingest:<topic>`)
ScopesFor = Callable[[web.Request], Sequence[str]]
# how a server words a refusal: (status, reason, headers) -> response
Refusal = Callable[[int, str, CIMultiDict[str]], web.StreamResponse]


def json_refusal(status: int, reason: str, headers: CIMultiDict[str]) -> web.StreamResponse:
    return web.json_response({"error": reason}, status=status, headers=headers)


def auth_middleware(
    settings: AuthSettings, scopes_for: ScopesFor, open_paths: Collection[str], refuse: Refusal = json_refusal
) -> Middleware:
    authenticator = Authenticator(settings)
    limits = PrincipalRateLimits(settings.rate_limit) if settings.rate_limit else None

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        try:
            principal = await asyncio.to_thread(authenticator.authenticate, request.headers)
        except Unauthenticated as exc:
            log.warning("event=auth_refused status=401 code=%s path=%s", exc.code, request.path)
            headers: CIMultiDict[str] = CIMultiDict()
            for challenge in authenticator.challenges():
                if challenge.startswith("Bearer") and exc.code != "missing":
                    challenge += ', error="invalid_token"'
                headers.add("WWW-Authenticate", challenge)
            return refuse(401, exc.reason, headers)
        except AuthUnavailable as exc:
            log.error("event=auth_unavailable path=%s error=%s", request.path, exc)
            return refuse(503, str(exc), CIMultiDict({"Retry-After": str(JWKS_RETRY_AFTER_SECONDS)}))
        if limits is not None and not await limits.admit(principal.name):
            log.warning("event=auth_rate_limited principal=%s path=%s", principal.name, request.path)
            reason = (
                f"rate limit of {limits.settings.requests} requests per {limits.settings.per_seconds:g}s "
                f"exceeded for {principal.name}"
            )
            return refuse(429, reason, CIMultiDict({"Retry-After": str(limits.retry_after)}))
        missing = [scope for scope in scopes_for(request) if not principal.allows(scope)]
        if missing:
            log.warning("event=auth_forbidden principal=%s scope=%s path=%s", principal.name, missing[0], request.path)
            return refuse(403, f"{principal.name} is not granted scope {missing[0]}", CIMultiDict())
        request[PRINCIPAL] = principal
        return await handler(request)

    return check
