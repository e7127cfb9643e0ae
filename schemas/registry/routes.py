"""The Confluent Schema Registry REST API on aiohttp: request parsing, content types, forwarding, responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from schemas.registry import errors
from schemas.registry.election import PrimaryElection
from schemas.registry.errors import RegistryError
from schemas.registry.parsing import SUPPORTED_TYPES
from schemas.registry.service import RegistryService, version_body

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# What Confluent produces, with its server-side quality: a client asking for application/json gets it.
PRODUCED_TYPES = (
    (CONTENT_TYPE, 1.0),
    ("application/vnd.schemaregistry+json", 0.9),
    ("application/json", 0.5),
)
ACCEPTED_CONTENT_TYPES = frozenset(
    {
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",
    }
)
FORWARDED_HEADER = "X-Headwater-Forwarded"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Registry:
    """The pieces a handler needs, stored on the aiohttp application."""

    def __init__(self, service: RegistryService, election: PrimaryElection) -> None:
        self.service = service
        self.election = election
        self.ready = False
        self.session: aiohttp.ClientSession | None = None


REGISTRY = web.AppKey("registry", Registry)


def reply(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status, content_type=CONTENT_TYPE)


def raw_reply(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=CONTENT_TYPE)


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def deleted_only(request: web.Request) -> bool:
    """Confluent's `deletedOnly`, also under the name confluent-kafka's Python client sends."""
    return flag(request, "deletedOnly") or flag(request, "deleted_only")


def negotiated_type(accept: str) -> str:
    """The produced type the Accept header rates highest (its q times Confluent's qs); ties go to Confluent's order."""
    best, best_score = CONTENT_TYPE, 0.0
    for produced, quality in PRODUCED_TYPES:
        family = produced.split("/", 1)[0]
        score = 0.0
        for item in accept.split(","):
            media, *params = (part.strip() for part in item.split(";"))
            if media.lower() not in (produced, f"{family}/*", "*/*"):
                continue
            weight = 1.0
            for param in params:
                key, _, value = param.partition("=")
                if key.strip() == "q":
                    try:
                        weight = float(value)
                    except ValueError:
                        weight = 0.0
            score = max(score, weight * quality)
        if score > best_score:
            best, best_score = produced, score
    return best


async def negotiate_content_type(request: web.Request, response: web.StreamResponse) -> None:
    accept = request.headers.get("Accept")
    # Most clients send */* or Confluent's own type; skip parsing for them, this runs on every response.
    if accept and accept not in ("*/*", CONTENT_TYPE) and response.content_type == CONTENT_TYPE:
        response.content_type = negotiated_type(accept)


def integer(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f"query parameter {name} must be an integer, not {raw!r}") from None


def page(request: web.Request, items: list[Any]) -> list[Any]:
    offset = max(0, integer(request, "offset", 0))
    limit = integer(request, "limit", -1)
    return items[offset:] if limit < 0 else items[offset : offset + limit]


async def read_json(request: web.Request) -> Any:
    mime = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if mime and mime not in ACCEPTED_CONTENT_TYPES:
        raise RegistryError(415, 415, f"HTTP 415 Unsupported Media Type: {mime} (send {CONTENT_TYPE})")
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise errors.bad_request(f"malformed JSON body: {exc}") from None


# --- middlewares ----------------------------------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryError as exc:
        response = reply(exc.body(), exc.status)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="headwater-registry"'
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return reply({"error_code": exc.status, "message": f"HTTP {exc.status} {exc.reason}"}, exc.status)
    except Exception:
        log.exception("event=request_failed method=%s path=%s", request.method, request.path)
        return reply({"error_code": 500, "message": "Internal Server Error"}, 500)


@web.middleware
async def readiness_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.app[REGISTRY].ready and request.path not in ("/healthz", "/readyz"):
        raise RegistryError(503, errors.STORE_TIMEOUT, "The registry is still reading its storage topic; retry")
    return await handler(request)


# --- forwarding writes to the primary -------------------------------------------------------------------------


async def as_primary(request: web.Request, body: Any, write: Callable[[], Awaitable[Any]]) -> web.Response:
    """Run `write` here when this process is the primary; otherwise hand the request to the primary."""
    registry = request.app[REGISTRY]
    if registry.election.is_primary:
        return reply(await write())
    if request.headers.get(FORWARDED_HEADER):
        raise RegistryError(503, errors.UNKNOWN_PRIMARY, "The request was forwarded to a registry that is not primary")
    url = await registry.election.primary_url()
    if url is None or url == registry.election.url:
        raise RegistryError(503, errors.UNKNOWN_PRIMARY, "No primary registry is elected right now; retry shortly")
    assert registry.session is not None
    headers = {FORWARDED_HEADER: "1", "Content-Type": CONTENT_TYPE}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    data = None if body is None else json.dumps(body).encode()
    try:
        async with registry.session.request(request.method, url + request.path_qs, data=data, headers=headers) as resp:
            payload = await resp.read()
            return web.Response(body=payload, status=resp.status, content_type=CONTENT_TYPE)
    except aiohttp.ClientError as exc:
        registry.election.forget_primary()
        raise RegistryError(
            500, errors.FORWARD_ERROR, f"Error while forwarding the request to the primary {url}: {exc}"
        ) from exc


# --- handlers -------------------------------------------------------------------------------------------------


def _service(request: web.Request) -> RegistryService:
    return request.app[REGISTRY].service


async def root(request: web.Request) -> web.Response:
    return reply({})


async def healthz(request: web.Request) -> web.Response:
    return reply({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if not registry.ready:
        return reply({"status": "loading"}, 503)
    return reply({"status": "ready", "primary": registry.election.is_primary})


async def list_subjects(request: web.Request) -> web.Response:
    names = _service(request).subjects(
        flag(request, "deleted"), deleted_only(request), request.query.get("subjectPrefix")
    )
    return reply(page(request, names))


async def list_versions(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    versions = _service(request).versions(subject, flag(request, "deleted"), deleted_only(request))
    return reply(page(request, versions))


async def register(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    body = await read_json(request)
    service = _service(request)
    existing = service.existing_id(subject, body)
    if existing is not None:
        return reply({"id": existing})

    async def write() -> dict[str, Any]:
        return {"id": await service.register(subject, body)}

    return await as_primary(request, body, write)


async def get_version(request: web.Request) -> web.Response:
    value = _service(request).version(
        request.match_info["subject"], request.match_info["version"], flag(request, "deleted")
    )
    return reply(version_body(value))


async def get_version_schema(request: web.Request) -> web.Response:
    value = _service(request).version(
        request.match_info["subject"], request.match_info["version"], flag(request, "deleted")
    )
    return raw_reply(value.schema.encode())


async def referenced_by(request: web.Request) -> web.Response:
    return reply(_service(request).referenced_by(request.match_info["subject"], request.match_info["version"]))


async def delete_version(request: web.Request) -> web.Response:
    subject, version = request.match_info["subject"], request.match_info["version"]
    permanent = flag(request, "permanent")

    async def write() -> int:
        return await _service(request).delete_version(subject, version, permanent)

    return await as_primary(request, None, write)


async def lookup(request: web.Request) -> web.Response:
    body = await read_json(request)
    value = _service(request).lookup(request.match_info["subject"], body, flag(request, "deleted"))
    return reply(version_body(value))


async def delete_subject(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    permanent = flag(request, "permanent")

    async def write() -> list[int]:
        return await _service(request).delete_subject(subject, permanent)

    return await as_primary(request, None, write)


def _schema_id(request: web.Request) -> int:
    return int(request.match_info["id"])


async def schema_by_id(request: web.Request) -> web.Response:
    return raw_reply(_service(request).schema_by_id(_schema_id(request)).response)


async def schema_text_by_id(request: web.Request) -> web.Response:
    return raw_reply(_service(request).schema_by_id(_schema_id(request)).schema.encode())


async def subjects_by_id(request: web.Request) -> web.Response:
    usages = _service(request).id_usages(_schema_id(request), flag(request, "deleted"))
    subject_filter = request.query.get("subject")
    subjects = sorted({s for s, _ in usages if subject_filter is None or s == subject_filter})
    return reply(page(request, subjects))


async def versions_by_id(request: web.Request) -> web.Response:
    usages = _service(request).id_usages(_schema_id(request), flag(request, "deleted"))
    subject_filter = request.query.get("subject")
    pairs = [{"subject": s, "version": v} for s, v in usages if subject_filter is None or s == subject_filter]
    return reply(page(request, pairs))


async def schema_types(request: web.Request) -> web.Response:
    return reply(list(SUPPORTED_TYPES))


async def test_compatibility(request: web.Request) -> web.Response:
    body = await read_json(request)
    verbose = flag(request, "verbose")
    try:
        reasons = _service(request).test_compatibility(
            request.match_info["subject"], request.match_info.get("version"), body
        )
    except RegistryError as exc:
        # Confluent answers an invalid schema under ?verbose=true as incompatible, with the reason.
        if not verbose or exc.code != errors.INVALID_SCHEMA:
            raise
        reasons = [exc.message]
    answer: dict[str, Any] = {"is_compatible": not reasons}
    if verbose:
        answer["messages"] = reasons
    return reply(answer)


def _subject_or_global(request: web.Request) -> str | None:
    return request.match_info.get("subject")


async def get_config(request: web.Request) -> web.Response:
    return reply(_service(request).config(_subject_or_global(request), flag(request, "defaultToGlobal")))


async def put_config(request: web.Request) -> web.Response:
    body = await read_json(request)

    async def write() -> dict[str, Any]:
        return await _service(request).set_config(_subject_or_global(request), body)

    return await as_primary(request, body, write)


async def delete_config(request: web.Request) -> web.Response:
    async def write() -> dict[str, Any]:
        return await _service(request).delete_config(_subject_or_global(request))

    return await as_primary(request, None, write)


async def get_mode(request: web.Request) -> web.Response:
    return reply(_service(request).mode_of(_subject_or_global(request), flag(request, "defaultToGlobal")))


async def put_mode(request: web.Request) -> web.Response:
    body = await read_json(request)
    force = flag(request, "force")

    async def write() -> dict[str, Any]:
        return await _service(request).set_mode(_subject_or_global(request), body, force)

    return await as_primary(request, body, write)


async def delete_mode(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]

    async def write() -> dict[str, Any]:
        return await _service(request).delete_mode(subject)

    return await as_primary(request, None, write)


def add_routes(app: web.Application) -> None:
    app.on_response_prepare.append(negotiate_content_type)
    version_path = "/subjects/{subject}/versions/{version}"
    app.router.add_routes(
        [
            web.get("/", root),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/subjects", list_subjects),
            web.get("/subjects/{subject}/versions", list_versions),
            web.post("/subjects/{subject}/versions", register),
            web.get(version_path, get_version),
            web.get(version_path + "/schema", get_version_schema),
            web.get(version_path + "/referencedby", referenced_by),
            web.delete(version_path, delete_version),
            web.post("/subjects/{subject}", lookup),
            web.delete("/subjects/{subject}", delete_subject),
            web.get(r"/schemas/ids/{id:\d+}", schema_by_id),
            web.get(r"/schemas/ids/{id:\d+}/schema", schema_text_by_id),
            web.get(r"/schemas/ids/{id:\d+}/subjects", subjects_by_id),
            web.get(r"/schemas/ids/{id:\d+}/versions", versions_by_id),
            web.get("/schemas/types", schema_types),
            web.post("/compatibility/subjects/{subject}/versions/{version}", test_compatibility),
            web.post("/compatibility/subjects/{subject}/versions", test_compatibility),
            web.get("/config", get_config),
            web.put("/config", put_config),
            web.delete("/config", delete_config),
            web.get("/config/{subject}", get_config),
            web.put("/config/{subject}", put_config),
            web.delete("/config/{subject}", delete_config),
            web.get("/mode", get_mode),
            web.put("/mode", put_mode),
            web.get("/mode/{subject}", get_mode),
            web.put("/mode/{subject}", put_mode),
            web.delete("/mode/{subject}", delete_mode),
        ]
    )
