"""An AWS JSON 1.1 service on pytest-httpserver, as Comprehend, Translate, Textract and Rekognition speak it: every
request is a POST to `/` whose `X-Amz-Target` header names the operation (`Comprehend_20171127.BatchDetectSentiment`),
with a JSON body; answers are JSON of type `application/x-amz-json-1.1`, errors a 4xx/5xx whose body names the error in
`__type`. Each target routes to a python callable taking the request body; every request is recorded, in order.

    service = AwsJsonService(httpserver)
    service.route("Comprehend_20171127.BatchDetectSentiment", lambda body: {"ResultList": [], "ErrorList": []})
    boto3.client("comprehend", endpoint_url=service.endpoint_url, ...)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

CONTENT_TYPE = "application/x-amz-json-1.1"
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class AwsError(Exception):
    """Raise from a handler to answer with an AWS error: `code` in `__type` (HTTP 400 unless `status` says)."""

    def __init__(self, code: str, message: str = "", status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class AwsRequest:
    target: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class AwsJsonService:
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.requests: list[AwsRequest] = []
        self._routes: dict[str, Handler] = {}
        self._lock = threading.Lock()
        server.expect_request("/", method="POST").respond_with_handler(self._dispatch)

    @property
    def endpoint_url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def route(self, target: str, handler: Handler) -> None:
        self._routes[target] = handler

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def bodies(self, target: str) -> list[dict[str, Any]]:
        """The request bodies sent to `target`, in order."""
        with self._lock:
            return [request.body for request in self.requests if request.target == target]

    def _dispatch(self, request: Request) -> Response:
        target = request.headers.get("X-Amz-Target", "")
        body = json.loads(request.get_data() or b"{}")
        with self._lock:
            self.requests.append(AwsRequest(target, body, dict(request.headers)))
        handler = self._routes.get(target)
        try:
            if handler is None:
                raise AwsError("UnknownOperationException", f"no route for {target!r}")
            answer = handler(body)
        except AwsError as error:
            return Response(
                json.dumps({"__type": error.code, "message": error.message}),
                status=error.status,
                headers={"x-amzn-ErrorType": error.code, **error.headers},
                content_type=CONTENT_TYPE,
            )
        return Response(json.dumps(answer), status=200, content_type=CONTENT_TYPE)
