"""A HubSpot portal on pytest-httpserver answering the documented CRM search shapes:
`POST /crm/v3/objects/{contacts|companies|deals}/search` with filterGroups, one sort, `after` paging, the
10,000-result window (400 when paging past it), 401 for an unknown token, and injectable faults."""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

MODIFIED = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate"}
_BASE = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def hs_time(seconds: int, millis: int = 0) -> str:
    """A timestamp as HubSpot returns it in properties."""
    moment = _BASE + timedelta(seconds=seconds, milliseconds=millis)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def millis(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def hs_contact(object_id: int, modified: str, lastname: str | None = "Doe", **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "hs_object_id": str(object_id),
        "createdate": "2024-01-15T08:30:00.000Z",
        "lastmodifieddate": modified,
        "firstname": "Ada",
        "lastname": lastname,
        "email": f"c{object_id}@example.com",
        "phone": None,
        "city": "Leeds",
        "country": "GB",
        "lifecyclestage": "lead",
    }
    properties.update(extra)
    return {"type": "contacts", "id": str(object_id), "properties": properties}


def hs_company(object_id: int, modified: str, name: str = "Acme Ltd") -> dict[str, Any]:
    properties = {
        "hs_object_id": str(object_id),
        "createdate": "2024-01-10T08:00:00.000Z",
        "hs_lastmodifieddate": modified,
        "name": name,
        "domain": "acme.example",
        "numberofemployees": "42",
        "annualrevenue": "1250000.50",
    }
    return {"type": "companies", "id": str(object_id), "properties": properties}


def hs_error(status: int, category: str, message: str, **headers: str) -> Response:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@dataclass
class FakeHubSpot:
    server: HTTPServer
    token: str = "pat-na1-11111111-2222-3333-4444-555555555555"
    window: int = 10_000
    records: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Response] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        path = re.compile(r"^/crm/v3/objects/(contacts|companies|deals)/search$")
        self.server.expect_request(path, method="POST").respond_with_handler(self._search)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def upsert(self, record: dict[str, Any]) -> None:
        """A change in the portal: the record replaces its earlier version."""
        self.records = [r for r in self.records if (r["type"], r["id"]) != (record["type"], record["id"])]
        self.records.append(record)

    def fail_next(self, *responses: Response) -> None:
        self.faults.extend(responses)

    def _search(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return hs_error(
                401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 2 hour(s) ago."
            )
        with self._lock:
            if self.faults:
                return self.faults.pop(0)
        object_type = request.path.split("/")[4]
        body = json.loads(request.get_data())
        self.bodies.append({"object": object_type, **body})
        limit, after = int(body.get("limit", 10)), int(body.get("after", 0))
        if after + limit > self.window:
            return hs_error(400, "VALIDATION_ERROR", f"Paging past {self.window} results is not supported")
        found = [r for r in self.records if r["type"] == object_type and self._matches(r, body.get("filterGroups"))]
        sort = body["sorts"][0]["propertyName"]
        found.sort(key=lambda r: self._sort_value(r, sort))
        page = found[after : after + limit]
        answer: dict[str, Any] = {
            "total": len(found),
            "results": [
                {
                    "id": r["id"],
                    "properties": r["properties"],
                    "createdAt": r["properties"]["createdate"],
                    "updatedAt": r["properties"][MODIFIED[object_type]],
                    "archived": False,
                }
                for r in page
            ],
        }
        if after + limit < len(found):
            answer["paging"] = {"next": {"after": str(after + limit), "link": f"?after={after + limit}"}}
        return Response(json.dumps(answer), status=200, content_type="application/json")

    @staticmethod
    def _sort_value(record: dict[str, Any], prop: str) -> int:
        value = record["properties"].get(prop)
        try:
            return int(value) if prop == "hs_object_id" else millis(value)
        except (TypeError, ValueError):
            return -1  # HubSpot sorts what it cannot compare first

    def _matches(self, record: dict[str, Any], groups: list[dict[str, Any]] | None) -> bool:
        if not groups:
            return True
        return any(all(self._holds(record, f) for f in group["filters"]) for group in groups)

    def _holds(self, record: dict[str, Any], flt: dict[str, Any]) -> bool:
        have = self._sort_value(record, flt["propertyName"])
        want = int(flt["value"])
        return {
            "GTE": have >= want,
            "GT": have > want,
            "EQ": have == want,
            "LT": have < want,
            "LTE": have <= want,
        }[flt["operator"]]
