"""A fake of the Textract and Rekognition calls moto does not answer (AnalyzeDocument, DetectModerationLabels; moto's
DetectDocumentText answers no blocks), speaking AWS JSON 1.1: POST /, the operation in `X-Amz-Target`, errors as
`{"__type": code, "message": ...}` with their HTTP status.

Objects come from S3 (moto's, through the client given) or the request's Bytes, so a reference that does not exist
is answered `InvalidS3ObjectException` as the services answer it. The fake "reads" a document by taking its bytes
as UTF-8 text: form feeds split pages, each line is a LINE block of WORD blocks, and with FeatureTypes FORMS each
`Key: value` line is a KEY and a VALUE KEY_VALUE_SET block linked as Textract links them (`[x]` / `[ ]` values are
SELECTION_ELEMENT blocks). Images are PNG or JPEG bytes; their moderation labels are what a test registered.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
SELECTION = {"[x]": "SELECTED", "[ ]": "NOT_SELECTED"}


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class ModerationLabel:
    name: str
    parent: str
    confidence: float


@dataclass
class _Blocks:
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, block_type: str, **members: Any) -> str:
        block_id = str(uuid.uuid4())
        self.items.append({"BlockType": block_type, "Id": block_id, "Confidence": 99.1, **members})
        return block_id


def _children(ids: list[str]) -> list[dict[str, Any]]:
    return [{"Type": "CHILD", "Ids": ids}] if ids else []


def _tokens(line: str) -> list[str]:
    return [("[ ]" if token == "[_]" else token) for token in line.replace("[ ]", "[_]").split()]


def _line(blocks: _Blocks, line: str, page: int, forms: bool) -> tuple[str, tuple[list[str], list[str]] | None]:
    """The LINE block's id, and the ids of the key's and the value's words when the line is `Key: value`."""
    tokens = _tokens(line)
    ids = [
        blocks.add("SELECTION_ELEMENT", SelectionStatus=SELECTION[token], Page=page)
        if token in SELECTION
        else blocks.add("WORD", Text=token, TextType="PRINTED", Page=page)
        for token in tokens
    ]
    words = [block_id for block_id, token in zip(ids, tokens, strict=True) if token not in SELECTION]
    text = " ".join(token for token in tokens if token not in SELECTION)
    line_id = blocks.add("LINE", Text=text, Page=page, Relationships=_children(words))
    ends_key = [index for index, token in enumerate(tokens) if token.endswith(":")]
    if not forms or not ends_key:
        return line_id, None
    return line_id, (ids[: ends_key[0] + 1], ids[ends_key[0] + 1 :])


def read_document(content: bytes, forms: bool) -> dict[str, Any]:
    try:
        text = content.decode()
    except UnicodeDecodeError:
        raise ServiceError("UnsupportedDocumentException", "Request has unsupported document format") from None
    if not text.strip() or any(char < " " and char not in "\n\f\t\r" for char in text):
        raise ServiceError("UnsupportedDocumentException", "Request has unsupported document format")
    blocks = _Blocks()
    pages = text.split("\f")
    for page_number, page in enumerate(pages, start=1):
        page_block = blocks.add("PAGE", Page=page_number)
        lines = [_line(blocks, line, page_number, forms) for line in page.splitlines() if line.strip()]
        next(block for block in blocks.items if block["Id"] == page_block)["Relationships"] = _children(
            [line_id for line_id, _ in lines]
        )
        for key_words, value_words in (pair for _, pair in lines if pair is not None):
            # The VALUE block comes first: Textract's order of the two is not fixed, readers follow the Ids.
            value_id = blocks.add(
                "KEY_VALUE_SET", EntityTypes=["VALUE"], Page=page_number, Relationships=_children(value_words)
            )
            relationships = [{"Type": "VALUE", "Ids": [value_id]}, *_children(key_words)]
            blocks.add("KEY_VALUE_SET", EntityTypes=["KEY"], Page=page_number, Relationships=relationships)
    return {"DocumentMetadata": {"Pages": len(pages)}, "Blocks": blocks.items}


class AwsMediaFake:
    def __init__(self, s3_client: Any) -> None:
        self._s3 = s3_client
        self.server = HTTPServer(host="127.0.0.1", port=0)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.moderation: dict[bytes, list[ModerationLabel]] = {}
        self._failures: list[ServiceError] = []
        self._operations: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "Textract.DetectDocumentText": lambda body: self._textract(body, forms=False),
            "Textract.AnalyzeDocument": lambda body: self._textract(body, forms="FORMS" in body["FeatureTypes"]),
            "RekognitionService.DetectModerationLabels": self._moderation,
        }
        self.server.expect_request("/", method="POST").respond_with_handler(self._handle)

    @property
    def endpoint(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.clear()
        if self.server.is_running():
            self.server.stop()

    def fail_next(self, code: str, status: int = 400) -> None:
        """Answer the next request with this error instead (a throttle, a 5xx)."""
        self._failures.append(ServiceError(code, f"injected {code}", status))

    def calls(self, target: str) -> list[dict[str, Any]]:
        return [body for name, body in self.requests if name == target]

    def _handle(self, request: Request) -> Response:
        target = request.headers.get("X-Amz-Target", "")
        body = json.loads(request.get_data() or b"{}")
        self.requests.append((target, body))
        try:
            if self._failures:
                raise self._failures.pop(0)
            operation = self._operations.get(target)
            if operation is None:
                raise ServiceError("UnknownOperationException", f"the fake does not answer {target}")
            answer, status = operation(body), 200
        except ServiceError as exc:
            answer, status = {"__type": exc.code, "message": str(exc)}, exc.status
        return Response(json.dumps(answer), status=status, content_type="application/x-amz-json-1.1")

    def _content(self, source: dict[str, Any]) -> bytes:
        if "Bytes" in source:
            return base64.b64decode(source["Bytes"])
        location = source["S3Object"]
        try:
            answer = self._s3.get_object(Bucket=location["Bucket"], Key=location["Name"])
        except ClientError:
            raise ServiceError(
                "InvalidS3ObjectException",
                "Unable to get object metadata from S3. Check object key, region and/or access permissions.",
            ) from None
        content: bytes = answer["Body"].read()
        return content

    def _textract(self, body: dict[str, Any], forms: bool) -> dict[str, Any]:
        return read_document(self._content(body["Document"]), forms)

    def _moderation(self, body: dict[str, Any]) -> dict[str, Any]:
        content = self._content(body["Image"])
        if not content.startswith(IMAGE_MAGIC):
            raise ServiceError("InvalidImageFormatException", "Request has invalid image format")
        floor = float(body.get("MinConfidence", 50.0))
        labels = [
            {"Name": label.name, "ParentName": label.parent, "Confidence": label.confidence, "TaxonomyLevel": 2}
            for label in self.moderation.get(content, [])
            if label.confidence >= floor
        ]
        return {"ModerationLabels": labels, "ModerationModelVersion": "7.0"}
