"""A Salesforce org on pytest-httpserver answering the documented REST shapes: the OAuth 2.0 token endpoint,
`/services/data/vXX.X/query` and `queryAll` with `nextRecordsUrl` paging, 401 INVALID_SESSION_ID for unknown
tokens, and injectable faults (429 with Retry-After, 5xx, malformed bodies) served before the next answer."""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

API_VERSION = "59.0"
_QUERY_PATH = re.compile(
    r"^/services/data/v(?P<version>[\d.]+)/(?P<endpoint>query|queryAll)(?:/(?P<locator>[^/]+))?/?$"
)
_SOQL = re.compile(
    r"^SELECT (?P<fields>.+) FROM (?P<object>\w+)"
    r"(?: WHERE \(SystemModstamp > (?P<since>\S+) OR \(SystemModstamp = (?P=since) AND Id > '(?P<id>\w+)'\)\))?"
    r" ORDER BY SystemModstamp, Id$"
)


def modstamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("+0000", "+00:00"))


def sf_time(minute: int, millis: int = 0) -> str:
    """A SystemModstamp as Salesforce writes it."""
    return f"2024-03-01T10:{minute:02d}:00.{millis:03d}+0000"


def contact(
    record_id: str, stamp: str, last_name: str | None = "Doe", deleted: bool = False, **extra: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "attributes": {"type": "Contact", "url": f"/services/data/v{API_VERSION}/sobjects/Contact/{record_id}"},
        "Id": record_id,
        "IsDeleted": deleted,
        "SystemModstamp": stamp,
        "CreatedDate": "2024-01-15T08:30:00.000+0000",
        "FirstName": "Jane",
        "LastName": last_name,
        "Email": f"{record_id.lower()}@example.com",
        "Phone": None,
        "AccountId": None,
        "Title": None,
        "Description": None,
        "MailingStreet": None,
        "MailingCity": "Berlin",
        "MailingPostalCode": None,
        "MailingState": None,
        "MailingCountry": "DE",
    }
    fields.update(extra)
    return fields


@dataclass
class FakeSalesforce:
    server: HTTPServer
    page_size: int = 3
    client_secret: str = "s3cr3t-client-value"
    records: list[dict[str, Any]] = field(default_factory=list)
    soql: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    logins: list[dict[str, str]] = field(default_factory=list)
    faults: list[Response] = field(default_factory=list)
    refuse_new_sessions: bool = False
    hold_page: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    _tokens: set[str] = field(default_factory=set)
    _locators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pages_served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server.expect_request("/services/oauth2/token", method="POST").respond_with_handler(self._token)
        self.server.expect_request(re.compile(r"^/services/data/.*")).respond_with_handler(self._query)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def expire_sessions(self) -> None:
        self._tokens.clear()

    def fail_next(self, *responses: Response) -> None:
        self.faults.extend(responses)

    def _token(self, request: Request) -> Response:
        form = {key: values[0] for key, values in parse_qs(request.get_data(as_text=True)).items()}
        self.logins.append(form)
        if form.get("client_secret") != self.client_secret:
            body = {"error": "invalid_client", "error_description": "invalid client credentials"}
            return Response(json.dumps(body), status=400, content_type="application/json")
        token = f"00D000000000001!{uuid.uuid4().hex}"
        if not self.refuse_new_sessions:
            self._tokens.add(token)
        body = {
            "access_token": token,
            "instance_url": self.url,
            "id": f"{self.url}/id/00D000000000001EAA/005000000000001AAA",
            "token_type": "Bearer",
            "issued_at": "1709287200000",
            "signature": "c2lnbmF0dXJl",
        }
        return Response(json.dumps(body), status=200, content_type="application/json")

    def _query(self, request: Request) -> Response:
        match = _QUERY_PATH.match(request.path)
        if match is None:
            return Response("[]", status=404, content_type="application/json")
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self._tokens:
            body = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
            return Response(json.dumps(body), status=401, content_type="application/json")
        with self._lock:
            if self.faults:
                return self.faults.pop(0)
            page_number = self.pages_served
            self.pages_served += 1
        if self.hold_page is not None and page_number == self.hold_page:
            self.release.wait(30)
        endpoint, locator = match["endpoint"], match["locator"]
        self.endpoints.append(endpoint)
        if locator is not None:
            remaining = self._locators.pop(locator)
        else:
            query = request.args["q"]
            self.soql.append(query)
            remaining = self._select(query, include_deleted=endpoint == "queryAll")
        return self._answer(match["version"], endpoint, remaining)

    def _select(self, query: str, include_deleted: bool) -> list[dict[str, Any]]:
        parsed = _SOQL.match(query)
        if parsed is None:
            raise AssertionError(f"unexpected SOQL: {query}")
        found = [r for r in self.records if r["attributes"]["type"] == parsed["object"]]
        if not include_deleted:
            found = [r for r in found if not r["IsDeleted"]]
        if parsed["since"]:
            since, last_id = modstamp(parsed["since"]), parsed["id"]
            found = [r for r in found if (modstamp(r["SystemModstamp"]), r["Id"]) > (since, last_id)]
        found.sort(key=lambda r: (modstamp(r["SystemModstamp"]), r["Id"]))
        wanted = {name.strip() for name in parsed["fields"].split(",")}
        return [{k: v for k, v in r.items() if k in wanted or k == "attributes"} for r in found]

    def _answer(self, version: str, endpoint: str, remaining: list[dict[str, Any]]) -> Response:
        page, rest = remaining[: self.page_size], remaining[self.page_size :]
        body: dict[str, Any] = {"totalSize": len(remaining), "done": not rest, "records": page}
        if rest:
            locator = f"01g{uuid.uuid4().hex[:15]}-{len(page)}"
            self._locators[locator] = rest
            body["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{locator}"
        return Response(json.dumps(body), status=200, content_type="application/json")


def error(status: int, code: str, message: str, **headers: str) -> Response:
    body = [{"message": message, "errorCode": code}]
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")
