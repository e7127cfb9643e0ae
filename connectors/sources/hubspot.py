"""HubSpot (hubspot-api-client): the CRM search API per object (contacts, companies, deals), filtered on the
last-modified property GTE the cursor and sorted ascending on it, paged with `after`.

The search API returns at most 10,000 results per query (paging past that answers 400), so before `after` would
reach the window the search starts over from the last seen modified timestamp. Records at that timestamp that were
already delivered are skipped by id (the cursor keeps their ids); when a whole window shares one timestamp, the
search switches to that timestamp alone sorted by `hs_object_id` and continues past the last id.

429 answers wait for Retry-After, 5xx and timeouts back off; a 401 (expired or revoked token) is a clear error,
since a private app token cannot be renewed here. Every request has a timeout.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from hubspot import HubSpot
from hubspot.crm.companies import ApiException as CompaniesApiException
from hubspot.crm.contacts import ApiException as ContactsApiException
from hubspot.crm.deals import ApiException as DealsApiException
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from tenacity import RetryCallState
from urllib3.exceptions import HTTPError as Urllib3Error

from connectors.base import ConnectorError, Cursor, PollingSource, SourceBatch, SourceFailure
from connectors.connector_index import register
from connectors.record_mapping import map_fields, take_mapped
from connectors.saas_retry import SaaSConfig, Throttled, call_with_retries, retry_after
from schemas.catalog import load_schema

log = logging.getLogger(__name__)

ObjectType = Literal["contacts", "companies", "deals"]
SEARCH_WINDOW = 10_000
MODIFIED_PROPERTY: dict[str, str] = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
_ADDRESS = {"street": "address", "city": "city", "postal_code": "zip", "region": "state", "country": "country"}
DEFAULT_OBJECTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "contacts": (
        "crm.contacts.raw",
        "crm/contact",
        {
            "contact_id": "hs_object_id",
            "source_system": "=hubspot",
            "first_name": "firstname",
            "last_name": "lastname",
            "email": "email",
            "phone": "phone",
            "account_id": "associatedcompanyid",
            "job_title": "jobtitle",
            **{f"mailing_address.{k}": v for k, v in _ADDRESS.items()},
            "lifecycle_stage": "lifecyclestage",
            "created_at": "createdate",
            "updated_at": "lastmodifieddate",
        },
    ),
    "companies": (
        "crm.accounts.raw",
        "crm/account",
        {
            "account_id": "hs_object_id",
            "source_system": "=hubspot",
            "name": "name",
            "domain": "domain",
            "industry": "industry",
            "employee_count": "numberofemployees",
            "annual_revenue": "annualrevenue",
            "phone": "phone",
            **{f"billing_address.{k}": v for k, v in _ADDRESS.items()},
            "notes": "description",
            "created_at": "createdate",
            "updated_at": "hs_lastmodifieddate",
        },
    ),
    "deals": (
        "crm.opportunities.raw",
        "crm/opportunity",
        {
            "opportunity_id": "hs_object_id",
            "source_system": "=hubspot",
            "account_id": "hs_primary_associated_company",
            "name": "dealname",
            "stage": "dealstage",
            "amount": "amount",
            "currency": "deal_currency_code",
            "probability": "hs_deal_stage_probability",
            "expected_close_at": "closedate",
            "notes": "description",
            "created_at": "createdate",
            "updated_at": "hs_lastmodifieddate",
        },
    ),
}


class HubSpotObjectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ObjectType = Field(description="CRM object: contacts, companies or deals.")
    topic: str | None = Field(default=None, description="Target topic; default crm.<entity>.raw.")
    schema_name: str | None = Field(default=None, description="Catalog schema (e.g. crm/contact) of the records.")
    properties: dict[str, str] | None = Field(
        default=None,
        description="Schema field (dotted for nested records) -> HubSpot property; `=text` is a constant. "
        "Default mappings exist for contacts, companies and deals (deals: account_id from "
        "hs_primary_associated_company).",
    )


class HubSpotConfig(SaaSConfig):
    access_token: SecretStr = Field(description="Private app access token (use ${ENV}).")
    host: str = Field(default="https://api.hubapi.com", description="API base URL.")
    objects: list[HubSpotObjectConfig] = Field(
        default_factory=lambda: [HubSpotObjectConfig(name=n) for n in ("contacts", "companies", "deals")],
        description="Objects to read; default contacts, companies and deals.",
    )
    page_size: int = Field(default=100, gt=0, le=200, description="Results per search request (the API allows 200).")
    search_window: int = Field(
        default=SEARCH_WINDOW,
        gt=1,
        le=SEARCH_WINDOW,
        description="Most results one search query can page through (HubSpot: 10,000); the search restarts from "
        "the cursor before reaching it.",
    )


class _Malformed(Exception):
    def __init__(self, raw: bytes, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw


@dataclass
class _Search:
    """An open search: where it started and how far `after` has paged."""

    filter_groups: list[dict[str, Any]]
    sort: str
    after: int = 0
    tie: bool = False
    started_since: int | None = None


def _millis(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _coerce(value: Any, avro: Any) -> Any:
    """HubSpot returns every property as a string (or null); convert to the schema's type."""
    if value is None or value == "":
        return None
    if isinstance(avro, list):
        return _coerce(value, next((b for b in avro if b != "null"), "string"))
    if isinstance(avro, dict) and str(avro.get("logicalType", "")).startswith("timestamp"):
        return _millis(str(value))
    base = avro.get("type") if isinstance(avro, dict) else avro
    if base in ("int", "long"):
        return int(float(value))
    if base in ("double", "float"):
        return float(value)
    return str(value)


def _build(properties: Mapping[str, Any], mapping: Mapping[str, str], schema: Mapping[str, Any]) -> dict[str, Any]:
    # HubSpot sends unset properties as empty strings: an address part that is unset is None
    return map_fields(mapping, schema, properties.get, _coerce, lambda raw: raw or None)


@register("hubspot")
class HubSpotSource(PollingSource[HubSpotConfig]):
    """Reads contacts, companies and deals incrementally through HubSpot's CRM search API."""

    Config = HubSpotConfig

    def __init__(self, name: str, config: HubSpotConfig) -> None:
        super().__init__(name, config)
        self._client: HubSpot | None = None
        self._open: dict[str, _Search] = {}
        self.requests: int = 0

    def _api(self, object_type: str) -> Any:
        if self._client is None:
            self._client = HubSpot(access_token=self.config.access_token.get_secret_value(), host=self.config.host)
        return getattr(self._client.crm, object_type).search_api

    def _spec(self, spec: HubSpotObjectConfig) -> tuple[str, dict[str, Any], dict[str, str]]:
        topic, schema_name, mapping = DEFAULT_OBJECTS[spec.name]
        return spec.topic or topic, load_schema(spec.schema_name or schema_name), spec.properties or mapping

    def fetch(self, cursor: Cursor | None) -> SourceBatch:
        """One search page per object; the cursor is committed page by page."""
        state: Cursor = dict(cursor or {})
        batch = SourceBatch(cursor=state)
        for spec in self.config.objects:
            batch.more = self._read_page(spec, state, batch) or batch.more
        return batch

    def _new_search(self, object_type: str, position: Mapping[str, Any] | None, tie: bool) -> _Search:
        modified = MODIFIED_PROPERTY[object_type]
        if position is None:
            return _Search([], modified)
        since = str(position["since"])
        started = int(position["since"])
        if tie:
            # a whole window at one timestamp: walk that timestamp in id order, after the last id delivered
            last_id = max(int(i) for i in position["ids"])
            filters = [
                {"propertyName": modified, "operator": "EQ", "value": since},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(last_id)},
            ]
            return _Search([{"filters": filters}], "hs_object_id", tie=True, started_since=started)
        gte = [{"filters": [{"propertyName": modified, "operator": "GTE", "value": since}]}]
        return _Search(gte, modified, started_since=started)

    def _read_page(self, spec: HubSpotObjectConfig, state: Cursor, batch: SourceBatch) -> bool:
        """Read the next search page of one object into the batch; True when more is waiting."""
        topic, schema, mapping = self._spec(spec)
        modified = MODIFIED_PROPERTY[spec.name]
        search = self._open.pop(spec.name, None) or self._new_search(spec.name, state.get(spec.name), tie=False)
        body: dict[str, Any] = {
            "filterGroups": search.filter_groups,
            "sorts": [{"propertyName": search.sort, "direction": "ASCENDING"}],
            "properties": sorted({modified, "hs_object_id", *(p for p in mapping.values() if not p.startswith("="))}),
            "limit": self.config.page_size,
        }
        if search.after:
            body["after"] = str(search.after)
        try:
            page = self._call(spec.name, body)
        except _Malformed as exc:
            batch.failures.append(SourceFailure(topic, exc.raw, "MalformedJSON", f"{spec.name}: {exc}", spec.name))
            log.warning("event=malformed_page source=%s object=%s", self.name, spec.name)
            return False
        for result in page["results"]:
            self._take(result, spec, topic, schema, mapping, modified, search.tie, state, batch)
        next_after = (page.get("paging") or {}).get("next", {}).get("after")
        position = state.get(spec.name)
        if next_after is None:
            if not search.tie or position is None:
                return False
            # the tied timestamp is exhausted: go on after it
            after_tie = [{"filters": [{"propertyName": modified, "operator": "GT", "value": str(position["since"])}]}]
            self._open[spec.name] = _Search(after_tie, modified, started_since=position["since"])
            return True
        if int(next_after) + self.config.page_size <= self.config.search_window:
            self._open[spec.name] = _Search(
                search.filter_groups, search.sort, int(next_after), search.tie, search.started_since
            )
            return True
        # paging on would pass the search window: search again from the cursor
        stuck = position is not None and position["since"] == search.started_since
        self._open[spec.name] = self._new_search(spec.name, position, tie=search.tie or stuck)
        log.info("event=search_window_moved source=%s object=%s tie=%s", self.name, spec.name, search.tie or stuck)
        return True

    def _take(
        self,
        result: Any,
        spec: HubSpotObjectConfig,
        topic: str,
        schema: dict[str, Any],
        mapping: Mapping[str, str],
        modified: str,
        tie: bool,
        state: Cursor,
        batch: SourceBatch,
    ) -> None:
        raw = json.dumps(result, default=str).encode()
        properties = result.get("properties") if isinstance(result, Mapping) else None
        if not isinstance(properties, Mapping):
            batch.failures.append(SourceFailure(topic, raw, "MissingField", "result without properties", spec.name))
            return
        record_id = properties.get("hs_object_id") or result.get("id")
        stamp = properties.get(modified)
        try:
            since = _millis(str(stamp)) if stamp else None
        except ValueError:
            since = None
        if not record_id or since is None:
            batch.failures.append(
                SourceFailure(topic, raw, "MissingField", f"result without hs_object_id or {modified}", spec.name)
            )
            return
        record_id = str(record_id)
        position = state.get(spec.name)
        if position is not None and since < int(position["since"]):
            return
        if position is not None and since == int(position["since"]):
            if record_id in position["ids"]:
                return
            # in id order (tie walk) the last id is all a restart needs; otherwise every id at this timestamp
            ids = [record_id] if tie else [*position["ids"], record_id]
            state[spec.name] = {"since": since, "ids": ids}
        else:
            state[spec.name] = {"since": since, "ids": [record_id]}
        where = f"{spec.name}@{stamp}|{record_id}"
        take_mapped(
            batch.records,
            batch.failures,
            topic,
            record_id,
            schema,
            where,
            raw,
            partial(_build, properties, mapping, schema),
        )

    def _call(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        """One search request: 429 waits for Retry-After, 5xx and timeouts back off; persisting, RetryableError
        hands the wait to the runner."""
        return call_with_retries(
            lambda: self._search(object_type, body), "HubSpot", self.config.max_retries, before_sleep=self._log_retry
        )

    def _search(self, object_type: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        try:
            response = self._api(object_type).do_search(
                public_object_search_request=body,
                _preload_content=False,
                _request_timeout=self.config.request_timeout,
            )
        except (ContactsApiException, CompaniesApiException, DealsApiException) as exc:
            status = int(exc.status or 0)
            if status == 429:
                raise Throttled(retry_after(exc.headers), "HTTP 429") from exc
            if status >= 500 or status == 0:
                raise Throttled(0.0, f"HTTP {status}" if status else "no answer") from exc
            if status == 401:
                raise ConnectorError(
                    "HubSpot answered 401: the access token is expired, revoked or wrong; set a valid private app token"
                ) from exc
            raise ConnectorError(f"HubSpot refused the {object_type} search ({status})") from exc
        except Urllib3Error as exc:
            raise Throttled(0.0, type(exc).__name__) from exc
        raw: bytes = response.data
        try:
            page = json.loads(raw)
        except ValueError as exc:
            raise _Malformed(raw, f"search answer is not JSON: {exc}") from exc
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise _Malformed(raw, "search answer has no results list")
        return page

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "event=hubspot_retry source=%s attempt=%d wait_s=%.1f reason=%s", self.name, state.attempt_number, wait, exc
        )

    def close(self) -> None:
        self._client = None
