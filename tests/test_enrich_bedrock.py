"""aws_bedrock through boto3 against a pytest-httpserver fake speaking bedrock-runtime's REST-JSON (`POST
/model/{modelId}/converse` and `/count-tokens`, the documented response shapes and error headers): the tool's answer
onto records, the request's tool schema and toolChoice, usage billed and priced, an invalid answer corrected once
through a toolResult, guardrails, the service's throttles and errors mapped for the stage, packed prompts, and the
checks at start."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pydantic import ValidationError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from streams.enrich import EnrichStage, build
from streams.enrich.aws_bedrock import BedrockProvider, base_model
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    ProviderStartError,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.runtime.config import load_pipeline
from tests.fakes import bedrock_converse as bedrock
from tests.fakes.openai_compatible import tokens
from tests.fixtures.s3 import CREDENTIALS

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
OUTPUTS = {
    "intent": {"type": "string", "enum": ["question", "complaint", "purchase"]},
    "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
}
ROOT = Path(__file__).resolve().parent.parent


def options(server: HTTPServer, **extra: Any) -> dict[str, Any]:
    return {
        **CREDENTIALS,
        "endpoint_url": server.url_for("").rstrip("/"),
        "model_id": HAIKU,
        "prompt": "Customer notes: {notes}",
        "outputs": OUTPUTS,
        **extra,
    }


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    """bedrock-runtime with CountTokens answering (start's probe); each test routes Converse."""
    httpserver.expect_request(bedrock.COUNT_TOKENS, method="POST").respond_with_handler(
        json_handler(bedrock.count_tokens)
    )
    return httpserver


def json_handler(build_answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Response]:
    def handler(request: Request) -> Response:
        return Response(json.dumps(build_answer(json.loads(request.get_data()))), content_type="application/json")

    return handler


def converse_requests(server: HTTPServer) -> list[tuple[str, dict[str, Any]]]:
    """(model id from the path, body) of each Converse request, in order."""
    sent = []
    for request, _ in server.log:
        match = bedrock.CONVERSE.match(request.path)
        if match:
            sent.append((match["model"], json.loads(request.get_data())))
    return sent


@asynccontextmanager
async def running(config: dict[str, Any]) -> AsyncIterator[BedrockProvider]:
    provider = build("aws_bedrock", config)
    assert isinstance(provider, BedrockProvider)
    await provider.start()
    try:
        yield provider
    finally:
        await provider.close()


async def test_answer_lands_on_the_record_and_the_request_carries_the_tool_schema_and_choice(
    server: HTTPServer,
) -> None:
    server.expect_request(bedrock.CONVERSE, method="POST").respond_with_handler(json_handler(bedrock.answer_request))
    provider = build("aws_bedrock", options(server, system="You triage CRM notes.", max_tokens=300))
    records: list[dict[str, Any]] = [{"notes": "Very unhappy, I want a refund!"}, {"notes": "How do I export?"}]
    stage = EnrichStage([provider], pipeline="contacts")
    try:
        failures, headers = await stage.run(records)
    finally:
        await stage.close()
    assert failures == [None, None]
    assert (records[0]["intent"], records[0]["urgency"]) == ("complaint", 4)
    assert (records[1]["intent"], records[1]["urgency"]) == ("question", 1)
    sent = converse_requests(server)
    assert len(sent) == 2
    model, body = next(item for item in sent if "refund" in item[1]["messages"][0]["content"][0]["text"])
    assert model == HAIKU
    prompt = "Customer notes: Very unhappy, I want a refund!"
    assert body["messages"] == [{"role": "user", "content": [{"text": prompt}]}]
    assert body["system"] == [{"text": "You triage CRM notes."}]
    assert body["inferenceConfig"] == {"maxTokens": 300, "temperature": 0.0}
    [tool] = body["toolConfig"]["tools"]
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "record_answer"}}
    assert tool["toolSpec"]["name"] == "record_answer"
    assert tool["toolSpec"]["inputSchema"]["json"] == {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["question", "complaint", "purchase"]},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["intent", "urgency"],
        "additionalProperties": False,
    }
    [entry] = json.loads(headers[0])
    assert entry["p"] == "aws_bedrock" and entry["m"] == HAIKU
    answered = {"intent": "complaint", "urgency": 4}
    assert entry["in"] == tokens(json.dumps(body)) and entry["out"] == tokens(json.dumps(answered))
    assert entry["usd"] == round(entry["in"] * 0.8e-6 + entry["out"] * 4e-6, 8)


async def test_usage_is_billed_and_priced_from_the_bedrock_list_price(server: HTTPServer) -> None:
    answer = bedrock.converse({"intent": "purchase", "urgency": 2}, input_tokens=321, output_tokens=17)
    server.expect_request(bedrock.CONVERSE).respond_with_json(answer)
    async with running(options(server, model_id="us.amazon.nova-lite-v1:0")) as provider:
        [outcome] = await provider.enrich([{"notes": "I'd like a quote"}])
        prices = provider.price_list()
    assert outcome == Enriched({"intent": "purchase", "urgency": 2}, {"input_tokens": 321, "output_tokens": 17})
    assert prices.usd_per == {"input_tokens": 0.06e-6, "output_tokens": 0.24e-6}
    assert (prices.read_on, prices.source) == ("2026-12-01", "https://aws.amazon.com/bedrock/pricing/")
    assert prices.cost(outcome.billed) == pytest.approx(321 * 0.06e-6 + 17 * 0.24e-6)


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        ("amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
        ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.meta.llama3-2-3b-instruct-v1:0",
            "meta.llama3-2-3b-instruct-v1:0",
        ),
    ],
)
def test_inference_profiles_and_arns_are_priced_as_their_model(model_id: str, base: str) -> None:
    assert base_model(model_id) == base
    provider = build("aws_bedrock", {"model_id": model_id, "prompt": "{notes}", "outputs": OUTPUTS})
    assert provider.price_list().usd_per["input_tokens"] > 0


async def test_unknown_model_costs_nothing_with_a_warning_unless_prices_are_set(
    server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.enrich.aws_bedrock"):
        async with running(options(server, model_id="cohere.command-r-v1:0")) as provider:
            assert provider.price_list().cost({"input_tokens": 1000, "output_tokens": 100}) == 0
        assert "event=model_price_unknown provider=aws_bedrock model=cohere.command-r-v1:0 cost=0" in caplog.text
        caplog.clear()
        async with running(options(server, model_id="cohere.command-r-v1:0", prices={"input_tokens": 5e-7})):
            pass
    assert "model_price_unknown" not in caplog.text


async def test_invalid_tool_input_is_asked_again_once_quoting_the_error_through_a_tool_result(
    server: HTTPServer,
) -> None:
    invalid = bedrock.converse({"intent": "complaint", "urgency": "high"}, input_tokens=50, output_tokens=10)
    fixed = bedrock.converse({"intent": "complaint", "urgency": 5}, input_tokens=80, output_tokens=10)
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(invalid)
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(fixed)
    async with running(options(server)) as provider:
        [outcome] = await provider.enrich([{"notes": "broken again!!"}])
    assert outcome == Enriched({"intent": "complaint", "urgency": 5}, {"input_tokens": 130, "output_tokens": 20})
    (_, first), (_, second) = converse_requests(server)
    assert second["messages"][0] == first["messages"][0]
    assert second["messages"][1] == {"role": "assistant", "content": invalid["output"]["message"]["content"]}
    [block] = second["messages"][2]["content"]
    result = block["toolResult"]
    assert result["toolUseId"] == invalid["output"]["message"]["content"][0]["toolUse"]["toolUseId"]
    assert result["status"] == "error"
    assert "urgency: 'high' is not of type 'integer'" in result["content"][0]["text"]
    assert second["toolConfig"] == first["toolConfig"]


async def test_invalid_twice_fails_the_record_and_a_text_answer_is_corrected_as_text(server: HTTPServer) -> None:
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(
        bedrock.converse(None, text="Sure! Intent: complaint", stop_reason="end_turn")
    )
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(bedrock.converse({"intent": "complaint"}))
    async with running(options(server)) as provider:
        [outcome] = await provider.enrich([{"notes": "hi"}])
    assert isinstance(outcome, EnrichFailure) and outcome.error_class == "InvalidStructuredOutput"
    assert "'urgency' is a required property" in outcome.message
    _, second = converse_requests(server)[1]
    assert second["messages"][1] == {"role": "assistant", "content": [{"text": "Sure! Intent: complaint"}]}
    assert "did not use the tool record_answer" in second["messages"][2]["content"][0]["text"]


@pytest.mark.parametrize("stop_reason", ["guardrail_intervened", "content_filtered"])
async def test_guardrail_or_content_filter_refuses_the_record_without_asking_again(
    server: HTTPServer, stop_reason: str
) -> None:
    answer = bedrock.converse(None, text="Sorry, the model cannot answer this.", stop_reason=stop_reason)
    server.expect_request(bedrock.CONVERSE).respond_with_json(answer)
    config = options(server, guardrail_id="gr1crm", guardrail_version="3")
    async with running(config) as provider:
        [outcome] = await provider.enrich([{"notes": "something harmful"}])
    assert outcome == EnrichFailure("Refused", f"{stop_reason}: Sorry, the model cannot answer this.")
    [(_, body)] = converse_requests(server)
    assert body["guardrailConfig"] == {"guardrailIdentifier": "gr1crm", "guardrailVersion": "3"}


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [
        ("ThrottlingException", 429, Throttled),
        ("InternalServerException", 500, TransientError),
        ("ServiceUnavailableException", 503, TransientError),
        ("ModelNotReadyException", 429, TransientError),
        ("ModelTimeoutException", 408, TransientError),
        ("AccessDeniedException", 403, ProviderUnavailable),
    ],
)
async def test_service_errors_are_the_stages_kinds_and_tried_once(
    server: HTTPServer, code: str, status: int, raised: type[Exception]
) -> None:
    server.expect_request(bedrock.CONVERSE).respond_with_response(bedrock.error(code, status, "not now"))
    async with running(options(server)) as provider:
        with pytest.raises(raised, match=code):
            await provider.enrich([{"notes": "hi"}])
    assert len(converse_requests(server)) == 1, "boto3 must not retry on its own: the stage decides"


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("ValidationException", 400, "Input is too long for requested model."),
        ("ModelErrorException", 424, "The model could not process the input."),
    ],
)
async def test_request_rejected_for_one_records_content_fails_that_record(
    server: HTTPServer, code: str, status: int, message: str
) -> None:
    server.expect_request(bedrock.CONVERSE).respond_with_response(bedrock.error(code, status, message))
    async with running(options(server)) as provider:
        [outcome] = await provider.enrich([{"notes": "x" * 5000}])
    assert outcome == EnrichFailure(code, f"aws_bedrock rejected the request: {message}")
    assert len(converse_requests(server)) == 1, "a rejected request is not asked again"


async def test_answer_cut_off_at_max_tokens_is_asked_again_once(server: HTTPServer) -> None:
    cut = bedrock.converse({"intent": "complaint"}, stop_reason="max_tokens", output_tokens=16)
    whole = bedrock.converse({"intent": "question", "urgency": 1})
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(cut)
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_json(whole)
    async with running(options(server, max_tokens=16)) as provider:
        [outcome] = await provider.enrich([{"notes": "how?"}])
    assert isinstance(outcome, Enriched) and outcome.fields == {"intent": "question", "urgency": 1}
    _, second = converse_requests(server)[1]
    [block] = second["messages"][2]["content"]
    assert "cut off at max_tokens" in block["toolResult"]["content"][0]["text"]


async def test_pack_of_three_is_one_call_answered_per_item_with_usage_split(server: HTTPServer) -> None:
    server.expect_request(bedrock.CONVERSE).respond_with_handler(json_handler(bedrock.answer_request))
    async with running(options(server, pack=3)) as provider:
        assert provider.batch_limit() == 3
        outcomes = await provider.enrich([{"notes": "refund now"}, {"notes": "pricing for 3 seats"}, {"notes": "how?"}])
    [(_, body)] = converse_requests(server)
    assert all(isinstance(outcome, Enriched) for outcome in outcomes)
    enriched = [outcome for outcome in outcomes if isinstance(outcome, Enriched)]
    assert [outcome.fields["intent"] for outcome in enriched] == ["complaint", "purchase", "question"]
    schema = body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]
    assert schema["required"] == ["items"]
    sent = tokens(json.dumps(body))
    assert [outcome.billed["input_tokens"] for outcome in enriched] == [pytest.approx(sent / 3)] * 3


@pytest.mark.parametrize(
    ("poisoned", "error_class"),
    [
        (bedrock.error("ValidationException", 400, "The model could not process the input."), "ValidationException"),
        (Response(json.dumps(bedrock.guardrail_intervened()), content_type="application/json"), "Refused"),
    ],
)
async def test_stage_splits_a_pack_bedrock_rejects_so_only_the_record_at_fault_fails(
    server: HTTPServer, poisoned: Response, error_class: str
) -> None:
    def converse(request: Request) -> Response:
        body = json.loads(request.get_data())
        if "POISON" in bedrock.first_user_text(body):
            return poisoned
        return Response(json.dumps(bedrock.answer_request(body)), content_type="application/json")

    server.expect_request(bedrock.CONVERSE).respond_with_handler(converse)
    provider = build("aws_bedrock", options(server, pack=3))
    records: list[dict[str, Any]] = [{"notes": "refund now"}, {"notes": "POISON"}, {"notes": "buy more seats"}]
    stage = EnrichStage([provider], pipeline="contacts")
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert failures[0] is None and failures[2] is None
    assert failures[1] is not None and failures[1].error_class == error_class
    assert (records[0]["intent"], records[2]["intent"]) == ("complaint", "purchase")
    assert len(converse_requests(server)) == 4, "the pack of three, then each record alone"


async def test_pack_rejected_by_bedrock_is_raised_for_the_stage_to_split(server: HTTPServer) -> None:
    server.expect_request(bedrock.CONVERSE).respond_with_response(bedrock.error("ValidationException", 400, "bad"))
    async with running(options(server, pack=2)) as provider:
        with pytest.raises(ClientError, match="ValidationException"):
            await provider.enrich([{"notes": "a"}, {"notes": "b"}])


async def test_without_toolchoice_for_models_that_refuse_it(server: HTTPServer) -> None:
    server.expect_request(bedrock.CONVERSE).respond_with_handler(json_handler(bedrock.answer_request))
    async with running(options(server, model_id="meta.llama3-3-70b-instruct-v1:0", force_tool=False)) as provider:
        [outcome] = await provider.enrich([{"notes": "refund"}])
    assert isinstance(outcome, Enriched)
    [(_, body)] = converse_requests(server)
    assert "toolChoice" not in body["toolConfig"]


async def test_start_without_credentials_fails_in_one_line_before_any_call(
    server: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = {key: value for key, value in options(server).items() if key not in ("access_key_id", "secret_access_key")}
    with pytest.raises(ProviderStartError, match="bedrock-runtime: no AWS credentials") as failed:
        await build("aws_bedrock", config).start()
    assert "\n" not in str(failed.value)
    assert server.log == []


async def test_start_probes_count_tokens_and_refuses_denied_access_or_an_unreachable_endpoint(
    httpserver: HTTPServer,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = {**options(httpserver), "endpoint_url": f"http://127.0.0.1:{closed_port}"}
    with pytest.raises(ProviderStartError, match=f"bedrock-runtime at http://127.0.0.1:{closed_port}"):
        await build("aws_bedrock", unreachable).start()
    denied = "You don't have access to the model with the specified model ID."
    httpserver.expect_oneshot_request(bedrock.COUNT_TOKENS).respond_with_response(
        bedrock.error("AccessDeniedException", 403, denied)
    )
    with pytest.raises(ProviderStartError, match=f"AccessDeniedException: {denied}") as failed:
        await build("aws_bedrock", options(httpserver)).start()
    assert "\n" not in str(failed.value)
    [(request, _)] = httpserver.log
    assert request.path == f"/model/{HAIKU}/count-tokens"
    assert json.loads(request.get_data()) == {
        "input": {"converse": {"messages": [{"role": "user", "content": [{"text": "ping"}]}]}}
    }
    assert "Credential=testing/" in request.headers["Authorization"], "the probe is signed with the credentials"


async def test_start_accepts_a_model_that_cannot_count_tokens(httpserver: HTTPServer) -> None:
    httpserver.expect_request(bedrock.COUNT_TOKENS).respond_with_response(
        bedrock.error("ValidationException", 400, "The provided model doesn't support counting tokens.")
    )
    async with running(options(httpserver, model_id="amazon.nova-lite-v1:0")) as provider:
        assert provider.model == "amazon.nova-lite-v1:0"
    assert not converse_requests(httpserver), "starting generates nothing"


@pytest.mark.parametrize(
    ("guardrail", "error"),
    [
        ({"guardrail_id": "gr1"}, "guardrail_id and guardrail_version go together"),
        ({"guardrail_id": "gr1", "guardrail_version": "v3"}, "guardrail_version\n  String should match pattern"),
        ({"guardrail_id": "GR-1", "guardrail_version": "3"}, "guardrail_id\n  String should match pattern"),
    ],
)
def test_config_refuses_a_guardrail_bedrock_would_reject_on_every_call(guardrail: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        build("aws_bedrock", {"model_id": HAIKU, "prompt": "{notes}", "outputs": OUTPUTS, **guardrail})


def test_example_loads_and_its_fields_exist_in_the_schemas() -> None:
    path = ROOT / "examples" / "enrich-aws-bedrock.yaml"
    text = path.read_text()
    assert "AWS_ACCESS_KEY_ID" in text and "Model access must be enabled" in text
    config = load_pipeline(path)
    output = {field["name"] for field in config.load_schema(config.output.schema_)["fields"]}
    raw = {field["name"] for field in config.load_schema("crm/contact")["fields"]}
    [step] = config.enrich
    provider = build(step.provider, step.options)
    assert step.provider == "aws_bedrock" and set(provider.output_fields()) <= output
    assert {path.split(".")[0] for path in provider.input_fields()} <= raw


async def test_stage_waits_out_a_throttle_and_then_enriches(server: HTTPServer) -> None:
    server.expect_oneshot_request(bedrock.CONVERSE).respond_with_response(
        bedrock.error("ThrottlingException", 429, "Too many requests, please wait before trying again.")
    )
    server.expect_request(bedrock.CONVERSE).respond_with_handler(json_handler(bedrock.answer_request))
    provider = build("aws_bedrock", options(server))
    records: list[dict[str, Any]] = [{"notes": "buy two licences"}]
    stage = EnrichStage([provider], pipeline="contacts")
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert failures == [None] and records[0]["intent"] == "purchase"
    assert len(converse_requests(server)) == 2, "throttled once, then answered"
