"""HTTP ingest (aiohttp): Salesforce Outbound Messages, HubSpot webhooks v3 and generic JSON events.

- `POST /salesforce/outbound`: the SOAP `notifications` message; each sObject becomes a record of its object's
  topic (Contact, Account, Opportunity by default, mapped as the Salesforce source maps them). The SOAP Ack
  (`<Ack>true</Ack>`) is sent only after the broker acknowledged, so Salesforce re-sends anything not stored.
- `POST /hubspot/webhooks`: a JSON array of events, accepted only with a valid `X-HubSpot-Signature-v3`
  (base64 HMAC-SHA256 of method + URI + body + timestamp under the app's client secret) and a timestamp at most
  five minutes old.
- `POST /topics/{topic}`: one JSON object or a list, validated against the latest schema of `<topic>-value`;
  the answer names the first field that does not match.

With an `auth` section every endpoint but /healthz needs an API key or an OIDC bearer token granted
`ingest:<topic>` for each topic it writes (Salesforce: every configured object's topic), except the webhooks listed
in `unauthenticated_webhooks` (Salesforce and HubSpot cannot send credentials); with `tls`, HTTPS.

Every endpoint answers 2xx only after the broker acknowledged every record, 4xx with the reason for a payload
it will never accept, and 503 while the broker (or the registry) is unreachable, so the sender retries.
Records the sender cannot fix (a CRM record missing a required field) go to the dead-letter topic instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import httpx
from aiohttp import web
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import parse_schema
from fastavro.validation import ValidationError, validate
from pydantic import Field, SecretStr

from connectors.base import ConnectorConfig, Emit, PushSource, SourceFailure, SourceRecord
from connectors.connector_index import register
from connectors.record_mapping import take_mapped
from connectors.sources.salesforce import DEFAULT_OBJECTS, ObjectConfig, build_value, resolve_object
from headwater.auth import AuthSettings, TlsSettings, auth_middleware
from headwater.kafka.producer import ProduceError
from headwater.settings import RegistrySettings
from schemas.client import registry_client

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_SIGNATURE_AGE_MS = 5 * 60 * 1000
SCHEMA_CACHE_SECONDS = 30.0
# the broker did not acknowledge in time, or the registry could not be reached
_UNAVAILABLE = (ProduceError, SchemaRegistryError, httpx.HTTPError, OSError)
_WEBHOOK_PATHS = {"salesforce": "/salesforce/outbound", "hubspot": "/hubspot/webhooks"}
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")

HUBSPOT_EVENT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "HubSpotWebhookEvent",
    "namespace": "io.headwater.hubspot",
    "doc": "One HubSpot webhook v3 event; the key is the object's hs_object_id.",
    "fields": [
        {"name": "event_id", "type": "long"},
        {"name": "subscription_type", "type": "string"},
        {"name": "object_id", "type": "long"},
        {"name": "portal_id", "type": "long"},
        {"name": "occurred_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "subscription_id", "type": ["null", "long"], "default": None},
        {"name": "property_name", "type": ["null", "string"], "default": None},
        {"name": "property_value", "type": ["null", "string"], "default": None},
        {"name": "change_source", "type": ["null", "string"], "default": None},
        {"name": "attempt_number", "type": ["null", "int"], "default": None},
    ],
}
_HUBSPOT_FIELDS = {
    "event_id": "eventId",
    "subscription_type": "subscriptionType",
    "object_id": "objectId",
    "portal_id": "portalId",
    "occurred_at": "occurredAt",
    "subscription_id": "subscriptionId",
    "property_name": "propertyName",
    "property_value": "propertyValue",
    "change_source": "changeSource",
    "attempt_number": "attemptNumber",
}


class WebhookConfig(ConnectorConfig):
    host: str = Field(default="127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(default=8088, ge=1, le=65535, description="TCP port to listen on.")
    public_url: str | None = Field(
        default=None,
        description="Base URL senders call (e.g. https://hooks.example.com) when behind a proxy; HubSpot signs it.",
    )
    hubspot_client_secret: SecretStr | None = Field(
        default=None, description="HubSpot app client secret (use ${ENV}); without it /hubspot/webhooks answers 404."
    )
    hubspot_topic: str = Field(default="crm.hubspot_events.raw", description="Topic of HubSpot webhook events.")
    salesforce_organization_id: str | None = Field(
        default=None, description="Accept Outbound Messages only from this org id (15 or 18 characters)."
    )
    salesforce_objects: list[ObjectConfig] = Field(
        default_factory=lambda: [ObjectConfig(name=n) for n in DEFAULT_OBJECTS],
        description="sObjects accepted in Outbound Messages; topic and field mapping as for the Salesforce source.",
    )
    topics: list[str] | None = Field(
        default=None, description="Topics /topics/{topic} may write to; default: any topic with a registered schema."
    )
    key_fields: dict[str, str] = Field(
        default_factory=dict, description="Topic -> field whose value is the record key; default the first field."
    )
    auth: AuthSettings | None = Field(
        default=None, description="API keys and/or OIDC tokens required (scope `ingest:<topic>`); default: open."
    )
    unauthenticated_webhooks: list[Literal["hubspot", "salesforce"]] = Field(
        default_factory=list,
        description="Webhooks exempt from `auth`: their senders cannot add credentials, they prove themselves "
        "(HubSpot's signature, Salesforce's organization id over TLS).",
    )
    tls: TlsSettings | None = Field(default=None, description="Serve HTTPS with this certificate and key.")


class _Rejected(Exception):
    """A payload the sender must fix: answered with `status` and this message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _field_name(error: ValidationError) -> str:
    details = [e for e in error.errors if getattr(e, "field", None)]
    if not details:
        return "record"
    # fastavro names fields by their record's full name: keep the record-relative part
    return str(details[-1].field).rsplit(".", 1)[-1]


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(client secret, method + uri + body + timestamp))."""
    message = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _soap_ack() -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
        f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
        "</soapenv:Body></soapenv:Envelope>"
    )


def _soap_fault(code: str, reason: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>soapenv:{code}</faultcode><faultstring>{_xml_text(reason)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@register("webhook")
class WebhookSource(PushSource[WebhookConfig]):
    """Receives Salesforce Outbound Messages, HubSpot webhooks and generic JSON events over HTTP."""

    Config = WebhookConfig

    def __init__(self, name: str, config: WebhookConfig) -> None:
        super().__init__(name, config)
        self._emit: Emit | None = None
        self._client: SchemaRegistryClient | None = None
        self._schemas: dict[str, tuple[float, dict[str, Any], Any]] = {}
        self._objects = {spec.name: self._object(spec) for spec in config.salesforce_objects}

    @staticmethod
    def _object(spec: ObjectConfig) -> tuple[str, dict[str, Any], dict[str, str]]:
        try:
            return resolve_object(spec)
        except ValueError as exc:
            raise ValueError(f"salesforce_objects: {exc}") from exc

    def app(self, emit: Emit, registry: RegistrySettings) -> web.Application:
        """The aiohttp application (separate from `serve` so it can be mounted elsewhere)."""
        self._emit = emit
        self._client = registry_client(registry)
        auth = self.config.auth
        exempt = {_WEBHOOK_PATHS[name] for name in self.config.unauthenticated_webhooks}
        middlewares = [auth_middleware(auth, self._scopes, {"/healthz", *exempt})] if auth else []
        app = web.Application(client_max_size=8 * 1024 * 1024, middlewares=middlewares)
        app.router.add_post(_WEBHOOK_PATHS["salesforce"], self._salesforce)
        app.router.add_post(_WEBHOOK_PATHS["hubspot"], self._hubspot)
        app.router.add_post("/topics/{topic}", self._topic)
        app.router.add_get("/healthz", self._healthz)
        return app

    async def serve(self, emit: Emit, stop: asyncio.Event, registry: RegistrySettings) -> None:
        runner = web.AppRunner(self.app(emit, registry), access_log=None)
        await runner.setup()
        try:
            tls = self.config.tls.server_context() if self.config.tls else None
            await web.TCPSite(runner, self.config.host, self.config.port, ssl_context=tls).start()
            log.info(
                "event=webhook_listening source=%s host=%s port=%d https=%s auth=%s",
                self.name,
                self.config.host,
                self.config.port,
                tls is not None,
                self.config.auth is not None,
            )
            await stop.wait()
        finally:
            await runner.cleanup()

    def _scopes(self, request: web.Request) -> list[str]:
        """`ingest:<topic>` for every topic the request's endpoint writes."""
        if request.path == _WEBHOOK_PATHS["salesforce"]:
            return sorted({f"ingest:{topic}" for topic, _, _ in self._objects.values()})
        if request.path == _WEBHOOK_PATHS["hubspot"]:
            return [f"ingest:{self.config.hubspot_topic}"]
        topic = request.match_info.get("topic")
        return [f"ingest:{topic}"] if topic else []

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _deliver(self, records: Sequence[SourceRecord], failures: Sequence[SourceFailure]) -> None:
        assert self._emit is not None, "app() sets the emitter before any request"
        await self._emit(records, failures)

    # Salesforce Outbound Messages

    async def _salesforce(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            records, failures = await asyncio.to_thread(self._notifications, body)
        except _Rejected as exc:
            log.warning("event=webhook_rejected source=%s kind=salesforce reason=%s", self.name, exc)
            return web.Response(
                status=exc.status, text=_soap_fault("Client", str(exc)), content_type="text/xml", charset="utf-8"
            )
        try:
            await self._deliver(records, failures)
        except _UNAVAILABLE as exc:
            return self._unavailable("salesforce", exc, soap=True)
        log.info(
            "event=webhook_accepted source=%s kind=salesforce records=%d dead_letters=%d",
            self.name,
            len(records),
            len(failures),
        )
        return web.Response(text=_soap_ack(), content_type="text/xml", charset="utf-8")

    def _notifications(self, body: bytes) -> tuple[list[SourceRecord], list[SourceFailure]]:
        if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
            raise _Rejected(400, "document type declarations are not accepted")
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise _Rejected(400, f"not well-formed XML: {exc}") from exc
        notifications = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notifications")
        if notifications is None:
            raise _Rejected(400, "no soapenv:Body/notifications element")
        org = notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or ""
        expected = self.config.salesforce_organization_id
        if expected and org[:15] != expected[:15]:
            raise _Rejected(403, f"OrganizationId {org} is not the configured org")
        records: list[SourceRecord] = []
        failures: list[SourceFailure] = []
        for notification in notifications.findall(f"{{{OUTBOUND_NS}}}Notification"):
            notification_id = notification.findtext(f"{{{OUTBOUND_NS}}}Id") or "?"
            sobject = notification.find(f"{{{OUTBOUND_NS}}}sObject")
            if sobject is None:
                raise _Rejected(400, f"notification {notification_id} has no sObject")
            kind = (sobject.get(f"{{{XSI}}}type") or "").split(":")[-1]
            if kind not in self._objects:
                raise _Rejected(400, f"sObject type {kind or '(none)'} is not configured in salesforce_objects")
            topic, schema, fields = self._objects[kind]
            values = {
                _local(child.tag): (None if child.get(f"{{{XSI}}}nil") == "true" else (child.text or ""))
                for child in sobject
            }
            # the message as received (re-serialising XML would rename its namespace prefixes)
            raw = body
            record_id = values.get("Id")
            where = f"outbound/{notification_id}|{record_id}"
            if not record_id:
                failures.append(SourceFailure(topic, raw, "MissingField", f"{kind} without Id", where))
                continue
            take_mapped(
                records, failures, topic, record_id, schema, where, raw, partial(build_value, values, fields, schema)
            )
        return records, failures

    # HubSpot webhooks v3

    async def _hubspot(self, request: web.Request) -> web.Response:
        secret = self.config.hubspot_client_secret
        if secret is None:
            raise web.HTTPNotFound(text="HubSpot webhooks are not configured (hubspot_client_secret)")
        body = await request.read()
        timestamp = request.headers.get("X-HubSpot-Request-Timestamp", "")
        signature = request.headers.get("X-HubSpot-Signature-v3", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > MAX_SIGNATURE_AGE_MS:
            log.warning("event=webhook_rejected source=%s kind=hubspot reason=stale_timestamp", self.name)
            return web.json_response(
                {"error": "X-HubSpot-Request-Timestamp missing or older than 5 minutes"}, status=401
            )
        public = self.config.public_url
        uri = public.rstrip("/") + request.rel_url.raw_path_qs if public else str(request.url)
        expected = hubspot_signature(secret.get_secret_value(), request.method, uri, body, timestamp)
        if not hmac.compare_digest(expected, signature):
            log.warning("event=webhook_rejected source=%s kind=hubspot reason=bad_signature", self.name)
            return web.json_response({"error": "X-HubSpot-Signature-v3 does not match"}, status=401)
        try:
            events = json.loads(body)
        except ValueError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        if not isinstance(events, list):
            events = [events]
        records, failures = await asyncio.to_thread(self._events, events)
        try:
            await self._deliver(records, failures)
        except _UNAVAILABLE as exc:
            return self._unavailable("hubspot", exc)
        log.info(
            "event=webhook_accepted source=%s kind=hubspot records=%d dead_letters=%d",
            self.name,
            len(records),
            len(failures),
        )
        return web.json_response({"accepted": len(records), "dead_lettered": len(failures)})

    def _events(self, events: Sequence[Any]) -> tuple[list[SourceRecord], list[SourceFailure]]:
        topic = self.config.hubspot_topic
        records: list[SourceRecord] = []
        failures: list[SourceFailure] = []
        for event in events:
            raw = json.dumps(event, separators=(",", ":")).encode()
            if not isinstance(event, Mapping):
                failures.append(SourceFailure(topic, raw, "MalformedEvent", "event is not a JSON object", "hubspot"))
                continue
            value = {name: event.get(source) for name, source in _HUBSPOT_FIELDS.items()}
            if value["property_value"] is not None:
                value["property_value"] = str(value["property_value"])
            missing = [
                _HUBSPOT_FIELDS[f["name"]]
                for f in HUBSPOT_EVENT_SCHEMA["fields"]
                if "default" not in f and not isinstance(value[f["name"]], str if f["type"] == "string" else int)
            ]
            where = f"hubspot/{event.get('eventId')}|{event.get('objectId')}"
            if missing:
                key = str(event["objectId"]).encode() if event.get("objectId") is not None else None
                message = f"event without {', '.join(missing)} (or of the wrong type)"
                failures.append(SourceFailure(topic, raw, "MissingField", message, where, key))
                continue
            records.append(SourceRecord(topic, str(value["object_id"]), value, HUBSPOT_EVENT_SCHEMA, where, raw))
        return records, failures

    # Generic JSON events

    async def _topic(self, request: web.Request) -> web.Response:
        topic = request.match_info["topic"]
        if not _TOPIC.match(topic) or topic.startswith("_"):
            return web.json_response({"error": f"{topic!r} is not a topic Headwater writes to"}, status=400)
        if self.config.topics is not None and topic not in self.config.topics:
            return web.json_response({"error": f"topic {topic} is not open for ingest (topics)"}, status=403)
        try:
            payload = await request.json(loads=json.loads)
        except ValueError as exc:
            return web.json_response({"error": f"body is not JSON: {exc}"}, status=400)
        try:
            schema, parsed = await self._latest_schema(topic)
            records = await asyncio.to_thread(self._validated, topic, payload, schema, parsed)
            await self._deliver(records, [])
        except _Rejected as exc:
            log.warning("event=webhook_rejected source=%s kind=json topic=%s", self.name, topic)
            return web.json_response({"error": str(exc)}, status=exc.status)
        except _UNAVAILABLE as exc:
            return self._unavailable("json", exc)
        log.info("event=webhook_accepted source=%s kind=json topic=%s records=%d", self.name, topic, len(records))
        return web.json_response({"accepted": len(records)})

    async def _latest_schema(self, topic: str) -> tuple[dict[str, Any], Any]:
        cached = self._schemas.get(topic)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        client = self._client
        assert client is not None, "app() builds the registry client"
        subject = f"{topic}-value"
        try:
            registered = await asyncio.to_thread(client.get_latest_version, subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise _Rejected(404, f"no schema registered under {subject}") from exc
            raise
        schema = json.loads(registered.schema.schema_str or "{}")
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise _Rejected(422, f"the latest schema of {subject} is not an Avro record")
        parsed = parse_schema(schema)
        self._schemas[topic] = (time.monotonic() + SCHEMA_CACHE_SECONDS, schema, parsed)
        return schema, parsed

    def _validated(self, topic: str, payload: Any, schema: dict[str, Any], parsed: Any) -> list[SourceRecord]:
        items = payload if isinstance(payload, list) else [payload]
        if not items:
            raise _Rejected(400, "empty list")
        names = [f["name"] for f in schema["fields"]]
        key_field = self.config.key_fields.get(topic, names[0])
        records = []
        for index, item in enumerate(items):
            where = f"[{index}] " if isinstance(payload, list) else ""
            if not isinstance(item, dict):
                raise _Rejected(400, f"{where}expected a JSON object")
            extra = sorted(set(item) - set(names))
            if extra:
                raise _Rejected(422, f"{where}field {extra[0]!r} is not in the schema of {topic}")
            try:
                validate(item, parsed, raise_errors=True)
            except ValidationError as exc:
                field = _field_name(exc)
                raise _Rejected(422, f"{where}field {field!r} does not match the schema of {topic}") from exc
            key = item.get(key_field)
            if key is None:
                raise _Rejected(422, f"{where}field {key_field!r} (the record key) is missing")
            records.append(SourceRecord(topic, str(key), item, schema, f"http/{topic}|{key}", item))
        return records

    def _unavailable(self, kind: str, exc: Exception, soap: bool = False) -> web.Response:
        log.error("event=webhook_unavailable source=%s kind=%s error_class=%s", self.name, kind, type(exc).__name__)
        reason = "broker or registry unavailable, retry later"
        if soap:
            return web.Response(
                status=503,
                text=_soap_fault("Server", reason),
                content_type="text/xml",
                charset="utf-8",
                headers={"Retry-After": "30"},
            )
        return web.json_response({"error": reason}, status=503, headers={"Retry-After": "30"})
