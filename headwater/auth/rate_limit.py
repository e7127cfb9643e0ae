"""A request rate per principal (aiolimiter's leaky bucket): over it the request is answered 429, not queued, so a
noisy sender cannot hold connections open nor slow anyone else down."""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

from headwater.auth.config import RateLimitSettings


class PrincipalRateLimits:
    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._limiters: dict[str, AsyncLimiter] = {}
        # a whole request's worth of the bucket drains in this many seconds
        self.retry_after = max(1, math.ceil(settings.per_seconds / settings.requests))

    async def admit(self, principal: str) -> bool:
        """Whether `principal` may make one more request now (it is counted if so)."""
        limiter = self._limiters.get(principal)
        if limiter is None:
            limiter = self._limiters[principal] = AsyncLimiter(self.settings.requests, self.settings.per_seconds)
        if not limiter.has_capacity():
            return False
        # has capacity: acquire returns at once (no await point lies between the check and here)
        await limiter.acquire()
        return True
