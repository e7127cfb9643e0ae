"""What the providers calling through an official SDK client share: the client is opened (and checked) once at
start, handed out while running, and closed at stop."""

from __future__ import annotations

from abc import abstractmethod
from typing import Generic, Protocol, TypeVar

from streams.enrich.base import Provider, ProviderConfig
from streams.enrich.model_prices import warn_if_unpriced


class Closable(Protocol):
    async def close(self) -> None: ...


Client = TypeVar("Client", bound=Closable)


class SdkClientProvider(Provider, Generic[Client]):
    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self._api: Client | None = None

    @property
    def api(self) -> Client:
        if self._api is None:
            raise RuntimeError(f"provider {self.name} used before start()")
        return self._api

    @abstractmethod
    def open_client(self) -> Client:
        """A client that tries once (the stage retries) and stops at the call's deadline; `ProviderStartError`
        without the credentials it needs."""

    @abstractmethod
    async def check_client(self, api: Client) -> None:
        """Reach the service with the credentials before anything is consumed; `ProviderStartError` otherwise."""

    async def start(self) -> None:
        if self._api is None:  # started once, whether by the stage or by whoever built it
            self._api = self.open_client()
        await self.check_client(self._api)
        warn_if_unpriced(self)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
