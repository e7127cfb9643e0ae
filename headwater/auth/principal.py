"""Who a request authenticated as, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key's principal or a token's subject, with its granted scopes.

    A granted scope may end in `*` (`ingest:*`, `ingest:crm.*`) to cover every scope it prefixes.
    """

    name: str
    scopes: frozenset[str]
    kind: str

    def allows(self, scope: str) -> bool:
        return any(fnmatchcase(scope, granted) for granted in self.scopes)


class Unauthenticated(Exception):
    """No usable credentials: answered 401 with this one-line reason; `code` is what the log says (never a secret)."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class AuthUnavailable(Exception):
    """The identity provider's JWKS could not be fetched: the caller retries later (503)."""
