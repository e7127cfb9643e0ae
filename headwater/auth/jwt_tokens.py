"""OIDC bearer tokens: a JWT signed by one of the identity provider's JWKS keys, with its issuer, this service as
audience, not expired. Keys are fetched and cached by PyJWKClient, which refetches the set once when a token names
a `kid` it does not hold (the provider rotated its keys), and again when the cache's lifespan ends."""

from __future__ import annotations

import ssl
from typing import Any

import jwt
from jwt import PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

from headwater.auth.config import OidcSettings
from headwater.auth.principal import AuthUnavailable, Principal, Unauthenticated

JWKS_TIMEOUT_SECONDS = 10.0


class TokenVerifier:
    """Checks bearer JWTs against one provider; `verify` blocks (JWKS fetch, signature), so run it in a thread."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        context = ssl.create_default_context(cafile=str(settings.jwks_ca_file) if settings.jwks_ca_file else None)
        # The parsed key set is cached for `jwks_cache_seconds`; PyJWKClient's per-kid cache stays off because it never
        # expires, so a key the provider retired would verify tokens for the rest of the process's life.
        self._jwks = PyJWKClient(
            settings.jwks_url,
            cache_keys=False,
            lifespan=settings.jwks_cache_seconds,
            timeout=JWKS_TIMEOUT_SECONDS,
            ssl_context=context,
            cooldown_duration=settings.jwks_refresh_cooldown_seconds,
        )

    def verify(self, token: str) -> Principal:
        try:
            signing_key = self._jwks.get_signing_key_from_jwt(token)
        except PyJWKClientConnectionError as exc:
            raise AuthUnavailable(f"the identity provider's JWKS could not be fetched: {type(exc).__name__}") from None
        except PyJWKClientError:
            raise Unauthenticated("token signed by a key the provider does not publish", "unknown_kid") from None
        except jwt.DecodeError:
            raise Unauthenticated("bearer token is not a JWT", "malformed_token") from None
        try:
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=self.settings.algorithms,
                audience=self.settings.audience,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired", "expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"token audience is not {self.settings.audience}", "wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"token issuer is not {self.settings.issuer}", "wrong_issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify", "bad_signature") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the claim or algorithm at fault, never the token itself
            raise Unauthenticated(f"token refused: {exc}", "invalid_token") from None
        return Principal(str(claims["sub"]), self._scopes(claims), "oidc")

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        granted = claims.get(self.settings.scope_claim, "")
        if isinstance(granted, str):
            return frozenset(granted.split())
        if isinstance(granted, list):
            return frozenset(str(scope) for scope in granted)
        return frozenset()
