"""The budget rule every worker of a pipeline step applies to the same records in the same (offset) order.

The book holds no I/O and no clock of its own: each record arrives with the broker's timestamp, so every worker that
applies the budget topic's records in offset order reaches the same decisions. Amounts are integer micro-dollars,
so sums are exact and identical everywhere, whatever order of float rounding a worker would otherwise hit.

- A reservation is granted iff, in both the hour and the day (UTC clock windows) its timestamp falls in, what was
  spent plus what is still reserved is below the limit the reservation carries. Only the grant that crosses a limit
  is admitted past it, so the workers together overspend by at most one batch.
- A settlement replaces a reservation's estimate by the actual amount, charged to the reservation's windows.
- A reservation not settled within `reservation_timeout` expires: its worker vanished, and the call it covered may
  have been billed, so its estimate is charged as spent. That is why expiring never frees budget (freeing it could
  admit a second batch past the limit); it ends the wait for a settlement that will not come, and a late
  settlement still corrects the charge to the actual amount.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Window = Literal["hour", "day"]
WINDOWS: tuple[Window, ...] = ("hour", "day")
_WINDOW_MS: dict[Window, int] = {"hour": 3_600_000, "day": 86_400_000}
MICROS_PER_USD = 1_000_000
_CHECK_ORDER: tuple[Window, ...] = ("day", "hour")  # a refusal names the window that stays used up longest


def to_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def window_start_ms(window: Window, at_ms: int) -> int:
    """Start of the UTC hour or day holding `at_ms` (epoch milliseconds; UTC days are whole multiples of a day)."""
    return at_ms - at_ms % _WINDOW_MS[window]


def window_end(window: Window, at_ms: int) -> datetime:
    return from_ms(window_start_ms(window, at_ms) + _WINDOW_MS[window])


def from_ms(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Grant:
    """A reservation the budget admitted; settle it with the actual amount once the call ended."""

    request_id: str
    estimate_usd: float
    reserved_at: datetime
    """The broker's timestamp of the reservation: the windows it is charged to."""


@dataclass(frozen=True)
class Refused:
    """A reservation the budget refused: `window`'s limit is used up until `resets_at`."""

    request_id: str
    window: Window
    resets_at: datetime
    reserved_at: datetime


Decision = Grant | Refused


@dataclass(frozen=True)
class _Reservation:
    at_ms: int
    micros: int


class BudgetBook:
    """Spend and open reservations of one pipeline step, per UTC hour and day."""

    def __init__(self, reservation_timeout: timedelta) -> None:
        self.timeout_ms = int(reservation_timeout.total_seconds() * 1000)
        self._spent: dict[Window, defaultdict[int, int]] = {window: defaultdict(int) for window in WINDOWS}
        self._reserved: dict[Window, defaultdict[int, int]] = {window: defaultdict(int) for window in WINDOWS}
        self._open: dict[str, _Reservation] = {}
        # Expired reservations, kept so a late settlement replaces the charged estimate by the actual amount.
        self._expired: dict[str, _Reservation] = {}
        self._now_ms = 0
        self._today = 0

    def reserve(self, request_id: str, micros: int, at_ms: int, limits: Mapping[Window, int]) -> Decision:
        """Decide a reservation by the limits it carries (micro-dollars per window), so workers agree on it even
        while a changed budget rolls out to some of them."""
        at_ms = self._advance(at_ms)
        reserved_at = from_ms(at_ms)
        for window in _CHECK_ORDER:
            if window not in limits:
                continue
            start = window_start_ms(window, at_ms)
            if self._spent[window][start] + self._reserved[window][start] >= limits[window]:
                return Refused(request_id, window, window_end(window, at_ms), reserved_at)
        self._open[request_id] = _Reservation(at_ms, micros)
        self._add(self._reserved, at_ms, micros)
        return Grant(request_id, to_usd(micros), reserved_at)

    def settle(self, request_id: str, micros: int, at_ms: int) -> None:
        """Charge the actual amount; a request this book never granted (refused, settled already, or reserved
        before the book's first record or before today, so in windows that are over) changes nothing."""
        self._advance(at_ms)
        reservation = self._open.pop(request_id, None)
        if reservation is not None:
            self._add(self._reserved, reservation.at_ms, -reservation.micros)
        else:
            reservation = self._expired.pop(request_id, None)
            if reservation is None:
                return
            self._add(self._spent, reservation.at_ms, -reservation.micros)
        self._add(self._spent, reservation.at_ms, micros)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as JSON-ready data: a worker that restores it and applies the records after the last one
        this book applied decides exactly as this book would."""
        return {
            "now_ms": self._now_ms,
            "spent": {window: list(book.items()) for window, book in self._spent.items()},
            "reserved": {window: list(book.items()) for window, book in self._reserved.items()},
            "open": [[key, value.at_ms, value.micros] for key, value in self._open.items()],
            "expired": [[key, value.at_ms, value.micros] for key, value in self._expired.items()],
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        self._now_ms = int(snapshot["now_ms"])
        self._today = window_start_ms("day", self._now_ms)
        for window in WINDOWS:
            self._spent[window] = defaultdict(int, {int(start): int(micros) for start, micros in
                                                    snapshot["spent"][window]})
            self._reserved[window] = defaultdict(int, {int(start): int(micros) for start, micros in
                                                       snapshot["reserved"][window]})
        self._open = {key: _Reservation(int(at_ms), int(micros)) for key, at_ms, micros in snapshot["open"]}
        self._expired = {key: _Reservation(int(at_ms), int(micros)) for key, at_ms, micros in snapshot["expired"]}

    def spent(self, window: Window, now_ms: int) -> int:
        """Spent in the window holding `now_ms`, counting reservations that are past their timeout by then."""
        start = window_start_ms(window, now_ms)
        return self._spent[window].get(start, 0) + self._overdue(window, start, now_ms)

    def reserved(self, window: Window, now_ms: int) -> int:
        """Still reserved in the window holding `now_ms` by reservations within their timeout."""
        start = window_start_ms(window, now_ms)
        return self._reserved[window].get(start, 0) - self._overdue(window, start, now_ms)

    def _overdue(self, window: Window, start: int, now_ms: int) -> int:
        return sum(
            reservation.micros for reservation in self._open.values()
            if window_start_ms(window, reservation.at_ms) == start and reservation.at_ms + self.timeout_ms <= now_ms
        )

    def _advance(self, at_ms: int) -> int:
        """Move the book's time to a record's timestamp (never backwards, so one late clock cannot reopen a day
        that was forgotten): expire overdue reservations and forget what belongs to days that are over."""
        self._now_ms = max(self._now_ms, at_ms)
        # Reservations are opened in time order (the book's time never goes back), so the overdue ones come first.
        while self._open:
            request_id, reservation = next(iter(self._open.items()))
            if reservation.at_ms + self.timeout_ms > self._now_ms:
                break
            del self._open[request_id]
            self._add(self._reserved, reservation.at_ms, -reservation.micros)
            self._add(self._spent, reservation.at_ms, reservation.micros)
            self._expired[request_id] = reservation
        today = window_start_ms("day", self._now_ms)
        if today != self._today:
            self._today = today
            self._forget_before(today)
        return self._now_ms

    def _forget_before(self, today: int) -> None:
        for reservations in (self._open, self._expired):
            for request_id in [key for key, reservation in reservations.items() if reservation.at_ms < today]:
                del reservations[request_id]
        for books in (self._spent, self._reserved):
            for book in books.values():
                for start in [start for start in book if start < today]:
                    del book[start]

    def _add(self, books: dict[Window, defaultdict[int, int]], at_ms: int, micros: int) -> None:
        for window in WINDOWS:
            books[window][window_start_ms(window, at_ms)] += micros
