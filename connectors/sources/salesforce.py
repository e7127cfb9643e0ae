"""Salesforce (simple-salesforce): incremental SOQL per object on `SystemModstamp`, ties broken by `Id`, paging
through `nextRecordsUrl`, deletions read with `queryAll` (`IsDeleted = true`) and sent as tombstones.

Login is the OAuth 2.0 token endpoint (client credentials, or username-password when a username is set); an
expired session (401 INVALID_SESSION_ID) logs in again once, then fails with a clear error. 429 and 5xx answers
are retried with backoff, honouring Retry-After; every request has a timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from connectors.base import (
    ConnectorError,
    Cursor,
    PollingSource,
    RetryableError,
    SourceBatch,
    SourceFailure,
    SourceRecord,
)
from connectors.connector_index import register
from connectors.record_mapping import map_fields, take_mapped
from connectors.saas_retry import SaaSConfig, Throttled, call_with_retries, retry_after
from schemas.catalog import load_schema

log = logging.getLogger(__name__)

_ADDRESS = ("street", "city", "postal_code", "region", "country")
DEFAULT_OBJECTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "Contact": (
        "crm.contacts.raw",
        "crm/contact",
        {
            "contact_id": "Id",
            "source_system": "=salesforce",
            "first_name": "FirstName",
            "last_name": "LastName",
            "email": "Email",
            "phone": "Phone",
            "account_id": "AccountId",
            "job_title": "Title",
            "notes": "Description",
            **{
                f"mailing_address.{p}": f"Mailing{s}"
                for p, s in zip(_ADDRESS, ("Street", "City", "PostalCode", "State", "Country"), strict=True)
            },
            "created_at": "CreatedDate",
            "updated_at": "SystemModstamp",
        },
    ),
    "Account": (
        "crm.accounts.raw",
        "crm/account",
        {
            "account_id": "Id",
            "source_system": "=salesforce",
            "name": "Name",
            "domain": "Website",
            "industry": "Industry",
            "employee_count": "NumberOfEmployees",
            "annual_revenue": "AnnualRevenue",
            "phone": "Phone",
            "notes": "Description",
            **{
                f"billing_address.{p}": f"Billing{s}"
                for p, s in zip(_ADDRESS, ("Street", "City", "PostalCode", "State", "Country"), strict=True)
            },
            "created_at": "CreatedDate",
            "updated_at": "SystemModstamp",
        },
    ),
    "Opportunity": (
        "crm.opportunities.raw",
        "crm/opportunity",
        {
            "opportunity_id": "Id",
            "source_system": "=salesforce",
            "account_id": "AccountId",
            "name": "Name",
            "stage": "StageName",
            "amount": "Amount",
            "currency": "=USD",
            "probability": "Probability",
            "notes": "Description",
            "created_at": "CreatedDate",
            "updated_at": "SystemModstamp",
        },
    ),
}


class ObjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="sObject API name, e.g. Contact, Account, Opportunity.")
    topic: str | None = Field(default=None, description="Target topic; default for the standard objects.")
    schema_name: str | None = Field(default=None, description="Catalog schema (e.g. crm/contact) of the records.")
    fields: dict[str, str] | None = Field(
        default=None,
        description="Schema field (dotted for nested records) -> Salesforce field; `=text` is a constant. "
        "Default for Contact, Account, Opportunity.",
    )


class SalesforceConfig(SaaSConfig):
    instance_url: str = Field(description="My Domain URL, e.g. https://acme.my.salesforce.com.")
    login_url: str | None = Field(default=None, description="OAuth token host; default instance_url.")
    client_id: SecretStr = Field(description="Connected app consumer key (use ${ENV}).")
    client_secret: SecretStr = Field(description="Connected app consumer secret (use ${ENV}).")
    username: str | None = Field(default=None, description="For the username-password flow; else client credentials.")
    password: SecretStr | None = Field(default=None, description="Password plus security token (use ${ENV}).")
    api_version: str = Field(default="59.0", description="REST API version.")
    objects: list[ObjectConfig] = Field(
        default_factory=lambda: [ObjectConfig(name=n) for n in DEFAULT_OBJECTS],
        description="Objects to read; default Contact, Account and Opportunity.",
    )


class _RecordingSession(requests.Session):
    """Adds the timeout to every request and keeps the last response (for Retry-After and raw bodies)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.last: requests.Response | None = None

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        self.last = super().request(method, url, *args, **kwargs)
        return self.last


def _path(record: Mapping[str, Any], field: str) -> Any:
    value: Any = record
    for part in field.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _coerce(value: Any, avro: Any) -> Any:
    if value is None:
        return None
    if isinstance(avro, list):
        branch = next((b for b in avro if b != "null"), "string")
        return _coerce(value, branch)
    if isinstance(avro, dict) and avro.get("logicalType", "").startswith("timestamp") and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
    base = avro.get("type") if isinstance(avro, dict) else avro
    if base == "int":
        return int(value)
    if base == "double":
        return float(value)
    if base == "string":
        return str(value)
    return value


def build_value(record: Mapping[str, Any], fields: Mapping[str, str], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Map a Salesforce record onto the schema's fields (nested records by dotted names)."""
    return map_fields(
        fields, schema, lambda name: _path(record, name), _coerce, lambda raw: None if raw is None else str(raw)
    )


def resolve_object(spec: ObjectConfig) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Topic, schema and field table of an sObject: as configured, else the defaults of the standard objects."""
    default = DEFAULT_OBJECTS.get(spec.name)
    topic = spec.topic or (default[0] if default else None)
    schema_name = spec.schema_name or (default[1] if default else None)
    fields = spec.fields or (default[2] if default else None)
    if topic is None or schema_name is None or fields is None:
        raise ValueError(f"{spec.name} needs topic, schema_name and fields")
    return topic, load_schema(schema_name), fields


def _soql_datetime(value: str) -> str:
    """Salesforce returns `2024-01-01T10:00:00.000+0000`; SOQL wants an ISO offset or Z, and the milliseconds
    must stay or records later within the same second would be read again forever."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _soql_id(value: str) -> str:
    if not value.isalnum():
        raise ConnectorError(f"cursor id {value!r} is not a Salesforce id")
    return value


@register("salesforce")
class SalesforceSource(PollingSource[SalesforceConfig]):
    """Reads Contacts, Accounts, Opportunities (or any sObject) incrementally from Salesforce."""

    Config = SalesforceConfig

    def __init__(self, name: str, config: SalesforceConfig) -> None:
        super().__init__(name, config)
        self._session = _RecordingSession(config.request_timeout)
        self._sf: Salesforce | None = None
        self._next_pages: dict[str, str] = {}

    def _login(self) -> Salesforce:
        config = self.config
        data = {
            "client_id": config.client_id.get_secret_value(),
            "client_secret": config.client_secret.get_secret_value(),
        }
        if config.username:
            data.update(
                grant_type="password",
                username=config.username,
                password=config.password.get_secret_value() if config.password else "",
            )
        else:
            data["grant_type"] = "client_credentials"
        url = f"{(config.login_url or config.instance_url).rstrip('/')}/services/oauth2/token"
        try:
            answer = self._session.post(url, data=data)
        except requests.RequestException as exc:
            raise RetryableError(f"Salesforce login unreachable: {type(exc).__name__}") from exc
        if answer.status_code >= 500 or answer.status_code == 429:
            raise RetryableError(f"Salesforce login answered {answer.status_code}")
        if answer.status_code != 200:
            raise ConnectorError(f"Salesforce login refused ({answer.status_code}): check client id/secret and user")
        try:
            token = answer.json()
            access_token = str(token["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryableError("Salesforce login answered without a readable access token") from exc
        instance = str(token.get("instance_url") or config.instance_url).rstrip("/")
        sf = Salesforce(
            instance_url=instance, session_id=access_token, session=self._session, version=config.api_version
        )
        # simple-salesforce assumes https; keep the scheme the token endpoint returned (proxies, test servers)
        sf.base_url = f"{instance}/services/data/v{config.api_version}/"
        log.info("event=salesforce_login source=%s", self.name)
        return sf

    def _call(self, request: Any) -> Any:
        """One API call: re-login once on an expired session, back off on 429/5xx/timeouts; when those persist,
        RetryableError hands the wait to the runner."""
        relogged = False

        def attempt() -> Any:
            nonlocal relogged
            if self._sf is None:
                self._sf = self._login()
            try:
                return request(self._sf)
            except SalesforceExpiredSession as exc:
                if relogged:
                    raise ConnectorError("Salesforce session expired again right after a new login") from exc
                relogged, self._sf = True, None
                log.warning("event=salesforce_session_expired source=%s", self.name)
                raise Throttled(0, f"HTTP {exc.status}") from exc
            except SalesforceError as exc:
                if exc.status == 429 or exc.status >= 500:
                    last = self._session.last
                    raise Throttled(
                        retry_after(last.headers if last is not None else None), f"HTTP {exc.status}"
                    ) from exc
                raise ConnectorError(f"Salesforce refused the query ({exc.status})") from exc
            except json.JSONDecodeError:
                raise
            except requests.RequestException as exc:
                raise Throttled(0, type(exc).__name__) from exc

        return call_with_retries(attempt, "Salesforce", self.config.max_retries)

    def fetch(self, cursor: Cursor | None) -> SourceBatch:
        """One page per object: the cursor is committed page by page, and memory stays bounded by the page size."""
        state: Cursor = dict(cursor or {})
        batch = SourceBatch(cursor=state)
        for spec in self.config.objects:
            batch.more = self._read_page(spec, state, batch) or batch.more
        return batch

    def _spec(self, spec: ObjectConfig) -> tuple[str, dict[str, Any], dict[str, str]]:
        try:
            return resolve_object(spec)
        except ValueError as exc:
            raise ConnectorError(f"source {self.name}: object {exc}") from exc

    def soql(self, spec: ObjectConfig, position: Mapping[str, Any] | None) -> str:
        """The incremental query of an object after a cursor position (None: from the beginning)."""
        _topic, _schema, fields = self._spec(spec)
        selected = sorted({"Id", "SystemModstamp", "IsDeleted", *(v for v in fields.values() if not v.startswith("="))})
        where = ""
        if position:
            since, last_id = _soql_datetime(position["modstamp"]), _soql_id(position["id"])
            where = f" WHERE (SystemModstamp > {since} OR (SystemModstamp = {since} AND Id > '{last_id}'))"
        return f"SELECT {', '.join(selected)} FROM {spec.name}{where} ORDER BY SystemModstamp, Id"

    def _read_page(self, spec: ObjectConfig, state: Cursor, batch: SourceBatch) -> bool:
        """Read the next page of one object into the batch; True when more pages are waiting."""
        topic, schema, fields = self._spec(spec)
        locator = self._next_pages.pop(spec.name, None)
        if locator is None:
            soql = self.soql(spec, state.get(spec.name))
            page = self._page(lambda sf: sf.query(soql, include_deleted=True), spec, topic, batch)
        else:
            page = self._page(lambda sf: sf.query_more(locator, include_deleted=True), spec, topic, batch)
        if page is None:
            return False
        for record in page.get("records", []):
            self._take(record, spec, topic, schema, fields, state, batch)
        if page.get("done", True) or not page.get("nextRecordsUrl"):
            return False
        self._next_pages[spec.name] = str(page["nextRecordsUrl"]).rstrip("/").rsplit("/", 1)[-1]
        return True

    def _page(self, request: Any, spec: ObjectConfig, topic: str, batch: SourceBatch) -> dict[str, Any] | None:
        try:
            page: dict[str, Any] = self._call(request)
        except json.JSONDecodeError as exc:
            raw = self._session.last.content if self._session.last is not None else b""
            batch.failures.append(SourceFailure(topic, raw, "MalformedJSON", f"{spec.name} page: {exc}", spec.name))
            log.warning("event=malformed_page source=%s object=%s", self.name, spec.name)
            return None
        if not isinstance(page, Mapping) or not isinstance(page.get("records", []), list):
            raw = self._session.last.content if self._session.last is not None else b""
            batch.failures.append(
                SourceFailure(topic, raw, "MalformedPage", f"{spec.name} page is not a query result", spec.name)
            )
            log.warning("event=malformed_page source=%s object=%s", self.name, spec.name)
            return None
        return page

    def _take(
        self,
        record: Mapping[str, Any],
        spec: ObjectConfig,
        topic: str,
        schema: dict[str, Any],
        fields: Mapping[str, str],
        state: Cursor,
        batch: SourceBatch,
    ) -> None:
        record_id, modstamp = record.get("Id"), record.get("SystemModstamp")
        raw = json.dumps(record, default=str).encode()
        if not record_id or not modstamp:
            batch.failures.append(
                SourceFailure(topic, raw, "MissingField", "record without Id or SystemModstamp", spec.name)
            )
            return
        where = f"{spec.name}@{modstamp}|{record_id}"
        state[spec.name] = {"modstamp": modstamp, "id": record_id}
        if record.get("IsDeleted"):
            batch.records.append(SourceRecord(topic, str(record_id), None, schema, where, raw))
            return
        take_mapped(
            batch.records,
            batch.failures,
            topic,
            str(record_id),
            schema,
            where,
            raw,
            partial(build_value, record, fields, schema),
        )

    def close(self) -> None:
        self._session.close()
