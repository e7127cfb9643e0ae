"""The chat and embedding providers (`openai`, `openai_embeddings`, `anthropic`) through their official SDKs against
pytest-httpserver fakes answering the documented shapes: structured answers onto records, usage billed, the service's
throttles, errors and timeouts mapped for the stage, an invalid answer corrected once, refusals, packed prompts, and
the checks at start. Also the standalone OpenAI-compatible server the demo and the benchmark use."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from schemas import catalog
from streams.enrich import EnrichStage, build
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    ProviderStartError,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.enrich.openai_chat import OpenAIChatConfig
from streams.enrich.prompting import Reply, StructuredPrompt, template_fields
from streams.runtime.config import load_pipeline
from tests.fakes import anthropic_messages as claude
from tests.fakes import openai_compatible as oai

OUTPUTS = {
    "intent": {"type": "string", "enum": ["question", "complaint", "purchase"]},
    "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
}
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ROOT = Path(__file__).resolve().parent.parent


def openai_options(server: HTTPServer, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "Customer notes: {notes}\nCity: {mailing_address.city}",
        "outputs": OUTPUTS,
        "base_url": server.url_for("/v1"),
        "api_key": "sk-test",
        **extra,
    }


def anthropic_options(server: HTTPServer, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "Customer notes: {notes}",
        "outputs": OUTPUTS,
        "base_url": server.url_for("").rstrip("/"),
        "api_key": "sk-ant-test",
        **extra,
    }


@pytest.fixture
def openai_server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(oai.models())
    return httpserver


@pytest.fixture
def anthropic_server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(claude.models())
    return httpserver


@pytest.fixture
def stalled(httpserver: HTTPServer) -> Iterator[threading.Event]:
    """Set at teardown: a handler waiting on it answers only after the client gave up. The server handles one
    request at a time, so answering one more request means the stalled one is done (and logged before the next
    test clears the log)."""
    release = threading.Event()
    yield release
    release.set()
    httpx.get(httpserver.url_for("/drained"), timeout=15)


def bodies(server: HTTPServer, path: str) -> list[dict[str, Any]]:
    return [json.loads(request.get_data()) for request, _ in server.log if request.path == path]


def answering(build_answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        return Response(json.dumps(build_answer(json.loads(request.get_data()))), content_type="application/json")

    return handler


def completion(content: Any, **extra: Any) -> dict[str, Any]:
    return oai.chat_completion(content if isinstance(content, str) else json.dumps(content), **extra)


async def started(name: str, options: dict[str, Any]) -> Any:
    provider = build(name, options)
    await provider.start()
    return provider


# --- openai --------------------------------------------------------------------------------------------------------


async def test_openai_structured_answer_lands_on_the_record_with_usage_and_price(openai_server: HTTPServer) -> None:
    openai_server.expect_request(CHAT, method="POST").respond_with_handler(answering(oai.chat_answer))
    provider = build("openai", openai_options(openai_server, system="You triage CRM notes."))
    records: list[dict[str, Any]] = [
        {"notes": "Very unhappy, I want a refund!", "mailing_address": {"city": "Lyon"}},
        {"notes": "How do I export my data?", "mailing_address": None},
    ]
    stage = EnrichStage([provider], pipeline="contacts")
    try:
        failures, headers = await stage.run(records)
    finally:
        await stage.close()
    assert failures == [None, None]
    assert records[0]["intent"] == "complaint" and records[0]["urgency"] == 4
    assert records[1]["intent"] == "question" and records[1]["urgency"] == 1
    sent = bodies(openai_server, CHAT)
    assert len(sent) == 2
    first = next(body for body in sent if "Lyon" in body["messages"][1]["content"])
    assert first["model"] == "gpt-4o-mini" and first["temperature"] == 0.0
    assert first["messages"][0] == {"role": "system", "content": "You triage CRM notes."}
    assert first["messages"][1]["content"] == "Customer notes: Very unhappy, I want a refund!\nCity: Lyon"
    schema_format = first["response_format"]
    assert schema_format["type"] == "json_schema" and schema_format["json_schema"]["strict"] is True
    schema = schema_format["json_schema"]["schema"]
    assert schema["required"] == ["intent", "urgency"] and schema["additionalProperties"] is False
    assert schema["properties"]["urgency"] == {"type": "integer", "minimum": 1, "maximum": 5}
    [entry] = json.loads(headers[0])
    assert entry["p"] == "openai" and entry["m"] == "gpt-4o-mini" and entry["in"] > 0 and entry["out"] > 0
    assert entry["usd"] == round(entry["in"] * 0.15e-6 + entry["out"] * 0.6e-6, 8)
    prices = provider.price_list()
    assert prices.usd_per == {"input_tokens": 0.15e-6, "output_tokens": 0.6e-6} and prices.read_on == "2026-12-01"


async def test_openai_bills_the_answers_usage(openai_server: HTTPServer) -> None:
    answer = {"intent": "purchase", "urgency": 2}
    openai_server.expect_request(CHAT).respond_with_json(completion(answer, prompt_tokens=321, completion_tokens=17))
    provider = await started("openai", openai_options(openai_server))
    [outcome] = await provider.enrich([{"notes": "I'd like a quote"}])
    assert outcome == Enriched(answer, {"input_tokens": 321, "output_tokens": 17})
    await provider.close()


@pytest.mark.parametrize(
    ("headers", "expected"), [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5)]
)
async def test_openai_429_is_throttled_with_the_retry_after_it_gave(
    openai_server: HTTPServer, headers: dict[str, str], expected: float
) -> None:
    body = oai.error("Rate limit reached for gpt-4o-mini", kind="requests", code="rate_limit_exceeded")
    openai_server.expect_request(CHAT).respond_with_json(body, status=429, headers=headers)
    provider = await started("openai", openai_options(openai_server))
    with pytest.raises(Throttled) as raised:
        await provider.enrich([{"notes": "hi"}])
    assert raised.value.retry_after == expected
    assert len(bodies(openai_server, CHAT)) == 1, "the SDK must not retry on its own"
    await provider.close()


async def test_openai_exhausted_quota_is_an_outage_not_a_throttle(openai_server: HTTPServer) -> None:
    body = oai.error("You exceeded your current quota", kind="insufficient_quota", code="insufficient_quota")
    openai_server.expect_request(CHAT).respond_with_json(body, status=429)
    provider = await started("openai", openai_options(openai_server))
    with pytest.raises(ProviderUnavailable, match="quota"):
        await provider.enrich([{"notes": "hi"}])
    await provider.close()


async def test_openai_500_is_transient(openai_server: HTTPServer) -> None:
    openai_server.expect_request(CHAT).respond_with_json(oai.error("The server had an error"), status=500)
    provider = await started("openai", openai_options(openai_server))
    with pytest.raises(TransientError, match="500"):
        await provider.enrich([{"notes": "hi"}])
    assert len(bodies(openai_server, CHAT)) == 1
    await provider.close()


async def test_openai_sdk_timeout_is_transient(openai_server: HTTPServer, stalled: threading.Event) -> None:
    def slow(request: Request) -> Response:
        stalled.wait(timeout=10)
        return Response(json.dumps(completion({"intent": "question", "urgency": 1})), content_type="application/json")

    openai_server.expect_request(CHAT).respond_with_handler(slow)
    provider = await started("openai", openai_options(openai_server, timeout_seconds=0.5))
    began = time.monotonic()
    with pytest.raises(TransientError, match="APITimeoutError"):
        await provider.enrich([{"notes": "hi"}])
    assert time.monotonic() - began < 3
    await provider.close()


async def test_openai_correction_gets_only_what_is_left_of_the_deadline(
    openai_server: HTTPServer, stalled: threading.Event
) -> None:
    def slow_invalid(request: Request) -> Response:
        stalled.wait(timeout=1.2)  # a slow first answer: the model's latency, not synchronisation
        return Response(json.dumps(completion("not json")), content_type="application/json")

    def hanging(request: Request) -> Response:
        stalled.wait(timeout=10)
        return Response(json.dumps(completion({"intent": "question", "urgency": 1})), content_type="application/json")

    openai_server.expect_oneshot_request(CHAT).respond_with_handler(slow_invalid)
    openai_server.expect_oneshot_request(CHAT).respond_with_handler(hanging)
    provider = await started("openai", openai_options(openai_server, timeout_seconds=2.0))
    began = time.monotonic()
    with pytest.raises(TransientError, match="APITimeoutError"):
        await provider.enrich([{"notes": "hi"}])
    assert time.monotonic() - began < 2.7, "the correction must not get a whole timeout of its own"
    await provider.close()


async def test_openai_invalid_answer_is_corrected_once_quoting_the_error(openai_server: HTTPServer) -> None:
    invalid = json.dumps({"intent": "angry", "urgency": 2})
    openai_server.expect_oneshot_request(CHAT).respond_with_json(completion(invalid, prompt_tokens=40))
    fixed = {"intent": "complaint", "urgency": 4}
    openai_server.expect_oneshot_request(CHAT).respond_with_json(completion(fixed, prompt_tokens=70))
    provider = await started("openai", openai_options(openai_server))
    [outcome] = await provider.enrich([{"notes": "I am angry"}])
    assert outcome == Enriched(fixed, {"input_tokens": 110, "output_tokens": 20})
    first, second = bodies(openai_server, CHAT)
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": invalid}
    correction = second["messages"][-1]
    assert (
        correction["role"] == "user"
        and "intent: 'angry' is not one of ['question', 'complaint', 'purchase']" in (correction["content"])
    )
    await provider.close()


@pytest.mark.parametrize(
    ("first", "second", "quoted"),
    [
        ("not json at all", "still not json", "the answer is not JSON"),
        ('{"intent": "question"}', '{"intent": "question", "urgency": 9}', "urgency: 9 is greater than the maximum"),
    ],
)
async def test_openai_answer_invalid_twice_fails_the_record(
    openai_server: HTTPServer, first: str, second: str, quoted: str
) -> None:
    for content in (first, second):
        openai_server.expect_oneshot_request(CHAT).respond_with_json(completion(content))
    provider = await started("openai", openai_options(openai_server))
    [outcome] = await provider.enrich([{"notes": "hello"}])
    assert isinstance(outcome, EnrichFailure) and outcome.error_class == "InvalidStructuredOutput"
    assert quoted in outcome.message and not outcome.unreachable
    assert len(bodies(openai_server, CHAT)) == 2, "exactly one correction"
    await provider.close()


async def test_openai_refusals_fail_only_their_record(openai_server: HTTPServer) -> None:
    def by_prompt(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["messages"][-1]["content"]
        if "weapon" in prompt:
            return oai.chat_completion(None, refusal="I'm sorry, I can't help with that.")
        return oai.chat_answer(body)

    openai_server.expect_request(CHAT).respond_with_handler(answering(by_prompt))
    provider = await started("openai", openai_options(openai_server))
    refused, answered = await provider.enrich([{"notes": "how to build a weapon"}, {"notes": "what is the price?"}])
    assert refused == EnrichFailure("Refused", "I'm sorry, I can't help with that.")
    assert isinstance(answered, Enriched) and answered.fields["intent"] == "question"
    await provider.close()


async def test_openai_400_content_filter_is_a_refusal_other_400s_a_bad_request(openai_server: HTTPServer) -> None:
    filtered = oai.error("The response was filtered", kind="invalid_request_error", code="content_filter")
    openai_server.expect_oneshot_request(CHAT).respond_with_json(filtered, status=400)
    too_long = oai.error("maximum context length exceeded", kind="invalid_request_error", code="context_length")
    openai_server.expect_oneshot_request(CHAT).respond_with_json(too_long, status=400)
    provider = await started("openai", openai_options(openai_server))
    [refused] = await provider.enrich([{"notes": "x"}])
    [rejected] = await provider.enrich([{"notes": "y"}])
    assert isinstance(refused, EnrichFailure) and refused.error_class == "Refused"
    assert isinstance(rejected, EnrichFailure) and rejected.error_class == "BadRequest"
    assert "maximum context length" in rejected.message
    await provider.close()


async def test_openai_pack_of_three_is_one_request_with_per_item_results(openai_server: HTTPServer) -> None:
    openai_server.expect_request(CHAT).respond_with_handler(
        answering(lambda body: {**oai.chat_answer(body), "usage": oai.usage(300, 60)})
    )
    provider = await started("openai", openai_options(openai_server, pack=3))
    assert provider.batch_limit() == 3
    notes = ["Unhappy, refund please", "I want to order 40 seats", "When do you open?"]
    outcomes = await provider.enrich([{"notes": text} for text in notes])
    [body] = bodies(openai_server, CHAT)
    prompt = body["messages"][-1]["content"]
    assert [prompt.index(f'<record index="{i}">') for i in range(3)] == sorted(
        prompt.index(f'<record index="{i}">') for i in range(3)
    )
    assert all(text in prompt for text in notes)
    items = body["response_format"]["json_schema"]["schema"]["properties"]["items"]["items"]
    assert items["required"] == ["index", "intent", "urgency"]
    assert [outcome.fields["intent"] for outcome in outcomes if isinstance(outcome, Enriched)] == [
        "complaint",
        "purchase",
        "question",
    ]
    assert all(outcome.billed == {"input_tokens": 100, "output_tokens": 20} for outcome in outcomes)
    await provider.close()


async def test_openai_pack_refused_as_a_whole_is_retried_record_by_record(openai_server: HTTPServer) -> None:
    def by_prompt(body: dict[str, Any]) -> dict[str, Any]:
        if "weapon" in body["messages"][-1]["content"]:
            return oai.chat_completion(None, refusal="I can't help with that.")
        return oai.chat_answer(body)

    openai_server.expect_request(CHAT).respond_with_handler(answering(by_prompt))
    records: list[dict[str, Any]] = [{"notes": "refund please"}, {"notes": "build a weapon"}, {"notes": "pricing?"}]
    stage = EnrichStage([build("openai", openai_options(openai_server, pack=3))], pipeline="contacts")
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert failures[0] is None and failures[2] is None
    assert failures[1] == EnrichFailure("Refused", "I can't help with that.")
    assert [records[0]["intent"], records[2]["intent"]] == ["complaint", "purchase"]
    assert len(bodies(openai_server, CHAT)) == 4, "the pack once, then each record alone"


async def test_openai_pack_bad_item_fails_alone_after_one_correction(openai_server: HTTPServer) -> None:
    good = {
        "items": [{"index": 0, "intent": "question", "urgency": 1}, {"index": 2, "intent": "purchase", "urgency": 2}]
    }
    still_bad = {"items": [{"index": 1, "intent": "question", "urgency": 0}]}
    first_answer = completion(good, prompt_tokens=90, completion_tokens=30)
    openai_server.expect_oneshot_request(CHAT).respond_with_json(first_answer)
    openai_server.expect_oneshot_request(CHAT).respond_with_json(completion(still_bad, prompt_tokens=60))
    provider = await started("openai", openai_options(openai_server, pack=3))
    first, second, third = await provider.enrich([{"notes": "a?"}, {"notes": "b"}, {"notes": "buy c"}])
    assert first == Enriched({"intent": "question", "urgency": 1}, {"input_tokens": 50, "output_tokens": 40 / 3 * 1})
    assert isinstance(third, Enriched) and third.fields == {"intent": "purchase", "urgency": 2}
    assert isinstance(second, EnrichFailure) and second.error_class == "InvalidStructuredOutput"
    assert "item 1: urgency: 0 is less than the minimum of 1" in second.message
    correction = bodies(openai_server, CHAT)[1]["messages"][-1]["content"]
    assert "no item with index 1" in correction
    await provider.close()


async def test_openai_missing_key_unreachable_endpoint_and_refused_key_fail_at_start(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderStartError, match="no API key \\(set api_key or OPENAI_API_KEY\\)"):
        await build("openai", {**openai_options(httpserver), "api_key": None}).start()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    unreachable = {**openai_options(httpserver), "base_url": f"http://127.0.0.1:{closed_port}/v1"}
    with pytest.raises(ProviderStartError, match=f"cannot reach http://127.0.0.1:{closed_port}/v1"):
        await build("openai", unreachable).start()
    httpserver.expect_request("/v1/models").respond_with_json(oai.error("Incorrect API key", kind="auth"), status=401)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with pytest.raises(ProviderStartError, match="refused the API key \\(401\\)"):
        await build("openai", {**openai_options(httpserver), "api_key": None}).start()
    assert httpserver.log[-1][0].headers["Authorization"] == "Bearer sk-from-env"


def test_prompt_template_fields_are_the_providers_input_fields(httpserver: HTTPServer) -> None:
    assert template_fields("{notes} in {mailing_address.city}, {{literal}} {notes}") == [
        "notes",
        "mailing_address.city",
    ]
    provider = build("openai", openai_options(httpserver))
    assert provider.input_fields() == ["notes", "mailing_address.city"]
    assert provider.output_fields() == ["intent", "urgency"]
    for bad in ("{notes!r}", "{amount:.2f}", "{0}", "{items[0]}", "no fields at all"):
        with pytest.raises(ValidationError, match="prompt"):
            build("openai", openai_options(httpserver, prompt=bad))
    with pytest.raises(ValidationError, match="minimum/maximum apply to integer or number"):
        build("openai", openai_options(httpserver, outputs={"x": {"type": "string", "minimum": 1}}))


def test_declared_outputs_become_the_json_schema_and_validate_answers() -> None:
    config = OpenAIChatConfig.model_validate(
        {
            "prompt": "{notes}",
            "outputs": {
                "tags": {"type": "array", "description": "Topics mentioned."},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "churn_risk": {"type": "boolean"},
                "tier": {"type": "integer", "enum": [1, 2, 3]},
            },
            "pack": 2,
        }
    )
    prompt = StructuredPrompt(config)
    assert prompt.item_schema["properties"] == {
        "tags": {"type": "array", "items": {"type": "string"}, "description": "Topics mentioned."},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "churn_risk": {"type": "boolean"},
        "tier": {"type": "integer", "enum": [1, 2, 3]},
    }
    packed_item = prompt.packed_schema["properties"]["items"]["items"]
    assert packed_item["properties"]["index"] == {"type": "integer"} and packed_item["additionalProperties"] is False
    good = {"tags": ["billing"], "score": 0.5, "churn_risk": False, "tier": 2}
    answer = {"items": [{"index": 1, **good}, {"index": 0, **good, "tier": 4}, {"index": 1, **good, "score": 7}]}
    valid, problems = prompt._items(Reply(answer=answer), [0, 1])
    assert valid == {1: good}, "the first item for an index counts; later duplicates are ignored"
    assert problems == {0: "item 0: tier: 4 is not one of [1, 2, 3]"}
    assert prompt._items(Reply(answer={"result": []}), [0, 1])[1] == dict.fromkeys(
        [0, 1], "'items' is a required property"
    )
    for outputs in ({"x": {"type": "boolean", "enum": [True]}}, {"index": {"type": "integer"}}, {}):
        with pytest.raises(ValidationError):
            OpenAIChatConfig.model_validate({"prompt": "{notes}", "outputs": outputs})


async def test_unknown_model_costs_nothing_and_warns_once_at_start(
    openai_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = await started("openai", openai_options(openai_server, model="llama3.1:8b"))
    assert provider.price_list().usd_per == {}
    assert [r.message for r in caplog.records if "model_price_unknown" in r.message] == [
        "event=model_price_unknown provider=openai model=llama3.1:8b cost=0"
    ]
    snapshot = build("openai", openai_options(openai_server, model="gpt-4o-mini-2024-07-18"))
    assert snapshot.price_list().usd_per["input_tokens"] == 0.15e-6
    await provider.close()


# --- openai_embeddings ---------------------------------------------------------------------------------------------


async def test_embeddings_vectors_land_on_records_and_tokens_are_billed(openai_server: HTTPServer) -> None:
    openai_server.expect_request("/v1/embeddings").respond_with_handler(answering(oai.embeddings_answer))
    provider = await started(
        "openai_embeddings",
        {"text_field": "profile.bio", "base_url": openai_server.url_for("/v1"), "api_key": "k", "dimensions": 4},
    )
    records: list[dict[str, Any]] = [
        {"profile": {"bio": "Data engineer in Oslo"}},
        {"profile": {"bio": None}},
        {"profile": {"bio": "Sales lead, 12 years of SaaS experience"}},
    ]
    outcomes = await provider.enrich(records)
    [body] = bodies(openai_server, "/v1/embeddings")
    assert body["input"] == ["Data engineer in Oslo", "Sales lead, 12 years of SaaS experience"]
    assert body["dimensions"] == 4 and body["model"] == "text-embedding-3-small"
    assert [outcome.fields["embedding"] for outcome in outcomes if isinstance(outcome, Enriched)] == [
        oai.vector("Data engineer in Oslo", 4),
        None,
        oai.vector("Sales lead, 12 years of SaaS experience", 4),
    ]
    billed = [outcome.billed.get("input_tokens", 0) for outcome in outcomes if isinstance(outcome, Enriched)]
    bios = [records[0]["profile"]["bio"], records[2]["profile"]["bio"]]
    assert sum(billed) == pytest.approx(sum(oai.tokens(bio) for bio in bios))
    assert billed[1] == 0 and billed[2] > billed[0]
    assert provider.max_batch == 2048 and provider.price_list().usd_per == {"input_tokens": 0.02e-6}
    await provider.close()


async def test_embeddings_an_input_the_api_rejects_fails_alone(openai_server: HTTPServer) -> None:
    def by_input(request: Request) -> Response:
        body = json.loads(request.get_data())
        if any("\x00" in text for text in body["input"]):
            rejected = oai.error("'$.input' is invalid", kind="invalid_request_error")
            return Response(json.dumps(rejected), status=400, content_type="application/json")
        return Response(json.dumps(oai.embeddings_answer(body)), content_type="application/json")

    openai_server.expect_request("/v1/embeddings").respond_with_handler(by_input)
    options = {"text_field": "t", "base_url": openai_server.url_for("/v1"), "api_key": "k"}
    records: list[dict[str, Any]] = [{"t": "fine"}, {"t": "bad\x00input"}, {"t": "also fine"}]
    stage = EnrichStage([build("openai_embeddings", options)], pipeline="contacts")
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert failures[0] is None and failures[2] is None
    assert failures[1] is not None and failures[1].error_class == "BadRequest" and not failures[1].unreachable
    assert records[0]["embedding"] == oai.vector("fine") and "embedding" not in records[1]


async def test_embeddings_throttle_is_raised_for_the_batch(openai_server: HTTPServer) -> None:
    openai_server.expect_request("/v1/embeddings").respond_with_json(
        oai.error("slow down", kind="requests"), status=429, headers={"retry-after": "3"}
    )
    options = {"text_field": "t", "base_url": openai_server.url_for("/v1"), "api_key": "k"}
    provider = await started("openai_embeddings", options)
    with pytest.raises(Throttled) as raised:
        await provider.enrich([{"t": "a"}, {"t": "b"}])
    assert raised.value.retry_after == 3.0
    await provider.close()


# --- anthropic -----------------------------------------------------------------------------------------------------


async def test_anthropic_structured_answer_through_the_tool_with_usage(anthropic_server: HTTPServer) -> None:
    anthropic_server.expect_request(MESSAGES, method="POST").respond_with_handler(answering(claude.answer_request))
    provider = await started("anthropic", anthropic_options(anthropic_server, system="Triage CRM notes."))
    [outcome] = await provider.enrich([{"notes": "Unhappy with the delivery, refund asap"}])
    assert isinstance(outcome, Enriched) and outcome.fields == {"intent": "complaint", "urgency": 4}
    [body] = bodies(anthropic_server, MESSAGES)
    assert outcome.billed == {
        "input_tokens": oai.tokens(json.dumps(body)),
        "output_tokens": oai.tokens(json.dumps(outcome.fields)),
    }
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 1024 and body["system"] == "Triage CRM notes."
    [tool] = body["tools"]
    assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
    assert tool["input_schema"]["properties"]["intent"]["enum"] == ["question", "complaint", "purchase"]
    assert tool["input_schema"]["required"] == ["intent", "urgency"]
    assert provider.price_list().usd_per == {"input_tokens": 1e-6, "output_tokens": 5e-6}
    await provider.close()


@pytest.mark.parametrize(
    ("status", "kind", "headers", "raised", "retry_after"),
    [
        (429, "rate_limit_error", {"retry-after": "12"}, Throttled, 12.0),
        (529, "overloaded_error", {}, Throttled, None),
        (500, "api_error", {}, TransientError, None),
    ],
)
async def test_anthropic_429_529_and_500_are_mapped_for_the_stage(
    anthropic_server: HTTPServer,
    status: int,
    kind: str,
    headers: dict[str, str],
    raised: type[Exception],
    retry_after: float | None,
) -> None:
    body = claude.error(kind, "nope")
    anthropic_server.expect_request(MESSAGES).respond_with_json(body, status=status, headers=headers)
    provider = await started("anthropic", anthropic_options(anthropic_server))
    with pytest.raises(raised, match=str(status)) as caught:
        await provider.enrich([{"notes": "hi"}])
    if isinstance(caught.value, Throttled):
        assert caught.value.retry_after == retry_after
    assert len(bodies(anthropic_server, MESSAGES)) == 1, "the SDK must not retry on its own"
    await provider.close()


async def test_anthropic_sdk_timeout_is_transient(anthropic_server: HTTPServer, stalled: threading.Event) -> None:
    def slow(request: Request) -> Response:
        stalled.wait(timeout=10)
        return Response(json.dumps(claude.answer_request(json.loads(request.get_data()))))

    anthropic_server.expect_request(MESSAGES).respond_with_handler(slow)
    provider = await started("anthropic", anthropic_options(anthropic_server, timeout_seconds=0.5))
    began = time.monotonic()
    with pytest.raises(TransientError, match="APITimeoutError"):
        await provider.enrich([{"notes": "hi"}])
    assert time.monotonic() - began < 3
    await provider.close()


async def test_anthropic_invalid_tool_input_is_corrected_once_through_a_tool_result(
    anthropic_server: HTTPServer,
) -> None:
    invalid = claude.message({"intent": "complaint", "urgency": "high"}, input_tokens=50, output_tokens=10)
    fixed = claude.message({"intent": "complaint", "urgency": 5}, input_tokens=80, output_tokens=10)
    anthropic_server.expect_oneshot_request(MESSAGES).respond_with_json(invalid)
    anthropic_server.expect_oneshot_request(MESSAGES).respond_with_json(fixed)
    provider = await started("anthropic", anthropic_options(anthropic_server))
    [outcome] = await provider.enrich([{"notes": "broken again!!"}])
    assert outcome == Enriched({"intent": "complaint", "urgency": 5}, {"input_tokens": 130, "output_tokens": 20})
    _, second = bodies(anthropic_server, MESSAGES)
    tool_use = invalid["content"][0]
    assert second["messages"][1] == {"role": "assistant", "content": [tool_use]}
    [result] = second["messages"][2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"] and result["is_error"] is True
    assert "urgency: 'high' is not of type 'integer'" in result["content"]
    await provider.close()


async def test_anthropic_invalid_twice_fails_and_a_text_answer_counts_as_invalid(anthropic_server: HTTPServer) -> None:
    anthropic_server.expect_oneshot_request(MESSAGES).respond_with_json(
        claude.message(None, text="Sure! Intent: complaint", stop_reason="end_turn")
    )
    anthropic_server.expect_oneshot_request(MESSAGES).respond_with_json(claude.message({"intent": "complaint"}))
    provider = await started("anthropic", anthropic_options(anthropic_server))
    [outcome] = await provider.enrich([{"notes": "hi"}])
    assert isinstance(outcome, EnrichFailure) and outcome.error_class == "InvalidStructuredOutput"
    assert "'urgency' is a required property" in outcome.message
    _, second = bodies(anthropic_server, MESSAGES)
    assert second["messages"][1] == {"role": "assistant", "content": "Sure! Intent: complaint"}
    assert "did not use the tool record_answer" in second["messages"][2]["content"]
    await provider.close()


async def test_anthropic_refusal_fails_the_record(anthropic_server: HTTPServer) -> None:
    anthropic_server.expect_request(MESSAGES).respond_with_json(claude.refusal("I can't help with that."))
    provider = await started("anthropic", anthropic_options(anthropic_server))
    [outcome] = await provider.enrich([{"notes": "something harmful"}])
    assert outcome == EnrichFailure("Refused", "I can't help with that.")
    assert len(bodies(anthropic_server, MESSAGES)) == 1, "a refusal is not asked again"
    await provider.close()


async def test_anthropic_pack_of_three_answers_per_item(anthropic_server: HTTPServer) -> None:
    anthropic_server.expect_request(MESSAGES).respond_with_handler(answering(claude.answer_request))
    provider = await started("anthropic", anthropic_options(anthropic_server, pack=3))
    outcomes = await provider.enrich([{"notes": "refund now"}, {"notes": "pricing for 10 seats"}, {"notes": "how?"}])
    assert [outcome.fields["intent"] for outcome in outcomes if isinstance(outcome, Enriched)] == [
        "complaint",
        "purchase",
        "question",
    ]
    assert len(bodies(anthropic_server, MESSAGES)) == 1
    await provider.close()


async def test_anthropic_missing_key_unreachable_endpoint_and_refused_key_fail_at_start(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderStartError, match="no API key \\(set api_key or ANTHROPIC_API_KEY\\)"):
        await build("anthropic", {**anthropic_options(httpserver), "api_key": None}).start()
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    with pytest.raises(ProviderStartError, match=f"cannot reach http://127.0.0.1:{closed_port}"):
        await build(
            "anthropic", {**anthropic_options(httpserver), "base_url": f"http://127.0.0.1:{closed_port}"}
        ).start()
    refused = claude.error("authentication_error", "invalid x-api-key")
    httpserver.expect_request("/v1/models").respond_with_json(refused, status=401)
    with pytest.raises(ProviderStartError, match="refused the API key"):
        await build("anthropic", anthropic_options(httpserver)).start()
    assert "sk-ant-test" in httpserver.log[-1][0].headers["Authorization"]


# --- redaction ----------------------------------------------------------------------------------------------------

PII = {
    "email": "jane.doe+crm@example.co.uk",
    "phone": "+1 415 555 2671",
    "credit_card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
}


@pytest.mark.parametrize("name", ["openai", "anthropic"])
async def test_no_original_pii_value_reaches_the_fakes_request_log(httpserver: HTTPServer, name: str) -> None:
    redact = list(PII)
    if name == "openai":
        httpserver.expect_request("/v1/models").respond_with_json(oai.models())
        httpserver.expect_request(CHAT).respond_with_handler(answering(oai.chat_answer))
        options = openai_options(httpserver, redact=redact, pack=2)
    else:
        httpserver.expect_request("/v1/models").respond_with_json(claude.models())
        httpserver.expect_request(MESSAGES).respond_with_handler(answering(claude.answer_request))
        options = {**anthropic_options(httpserver, redact=redact, pack=2), "prompt": "{notes} / {contact.email}"}
    records: list[dict[str, Any]] = [
        {
            "notes": f"Unhappy: refund card {PII['credit_card']} to IBAN {PII['iban']}, call {PII['phone']}",
            "mailing_address": {"city": "Leeds"},
            "contact": {"email": PII["email"]},
        },
        {"notes": f"Write to {PII['email']} about pricing", "mailing_address": None, "contact": None},
    ]
    originals = json.loads(json.dumps(records))
    stage = EnrichStage([build(name, options)], pipeline="contacts")
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert failures == [None, None]
    sent = [request.get_data(as_text=True) for request, _ in httpserver.log if request.method == "POST"]
    assert len(sent) == 1, "both records in one packed prompt"
    for value in PII.values():
        assert value not in sent[0] and json.dumps(value)[1:-1] not in sent[0]
    assert all(placeholder in sent[0] for placeholder in ("<CREDIT_CARD>", "<IBAN>", "<PHONE>", "<EMAIL>"))
    assert all(records[i][key] == originals[i][key] for i in range(2) for key in originals[i])
    assert records[0]["intent"] == "complaint"


# --- the standalone OpenAI-compatible server -----------------------------------------------------------------------


@pytest.fixture
def fake_openai_url() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "streams.fake_openai", "--port", str(port), "--latency-ms", "20"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=0.5)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stdout.read() if server.stdout else b""
                    raise RuntimeError(f"fake server did not start: {output!r}") from None
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_standalone_fake_answers_logs_requests_and_injects_faults(fake_openai_url: str) -> None:
    base_url = f"{fake_openai_url}/v1"
    provider = await started(
        "openai", {"prompt": "{notes}", "outputs": OUTPUTS, "base_url": base_url, "api_key": "k", "pack": 2}
    )
    outcomes = await provider.enrich([{"notes": "unhappy, refund"}, {"notes": "buy 3 more"}])
    intents = [outcome.fields["intent"] for outcome in outcomes if isinstance(outcome, Enriched)]
    assert intents == ["complaint", "purchase"]
    async with httpx.AsyncClient(base_url=fake_openai_url) as control:
        log = (await control.get("/_requests")).json()
        assert log["calls"] == 1 and "unhappy, refund" in log["requests"][0]["body"]["messages"][-1]["content"]
        await control.post("/_fault", json={"status": 503, "count": 1})
        with pytest.raises(TransientError, match="503"):
            await provider.enrich([{"notes": "a"}, {"notes": "b"}])
        await control.post("/_fault", json={"status": 429, "count": 1, "retry_after": 2})
    with pytest.raises(Throttled) as throttled:
        await provider.enrich([{"notes": "a"}, {"notes": "b"}])
    assert throttled.value.retry_after == 2.0
    embedder = await started("openai_embeddings", {"text_field": "notes", "base_url": base_url, "api_key": "k"})
    [embedded] = await embedder.enrich([{"notes": "hello"}])
    assert isinstance(embedded, Enriched) and embedded.fields["embedding"] == oai.vector("hello")
    await provider.close()
    await embedder.close()


# --- shipped examples ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key"), [("enrich-openai.yaml", "OPENAI_API_KEY"), ("enrich-anthropic.yaml", "ANTHROPIC_API_KEY")]
)
def test_examples_load_and_their_fields_exist_in_the_schemas(name: str, key: str) -> None:
    path = ROOT / "examples" / name
    assert key in path.read_text() and "base_url" in path.read_text()
    config = load_pipeline(path)
    output = {field["name"] for field in config.load_schema(config.output.schema_)["fields"]}
    raw = {field["name"] for field in config.load_schema("crm/contact")["fields"]}
    for step in config.enrich:
        provider = build(step.provider, step.options)
        assert set(provider.output_fields()) <= output
        assert {path.split(".")[0] for path in provider.input_fields()} <= raw


def test_the_demo_llm_step_builds_and_writes_fields_the_contacts_schema_has() -> None:
    step = yaml.safe_load((ROOT / "streams" / "pipelines" / "steps" / "crm_intent.yaml").read_text())
    provider = build(step["provider"], step["options"])
    enriched = {field["name"] for field in catalog.load_schema("crm/contact_enriched")["fields"]}
    assert set(provider.output_fields()) <= enriched and provider.input_fields() == ["notes"]
