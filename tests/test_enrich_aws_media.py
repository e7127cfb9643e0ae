"""aws_rekognition, aws_textract and aws_sagemaker against AWS's wire protocols: moto's server where it answers the call
(S3 objects, Rekognition DetectLabels, SageMaker runtime InvokeEndpoint with results set through moto's API), the
JSON 1.1 fake in tests/fakes/aws_media.py where moto lacks it (Textract, DetectModerationLabels), and a REST-JSON
fake of InvokeEndpoint to see the request built and to answer errors moto cannot be made to answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastavro
import pydantic
import pytest
import requests
from botocore.exceptions import ClientError
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from headwater.ports import free_port
from streams.enrich import EnrichStage, build
from streams.enrich.base import (
    Enriched,
    EnrichFailure,
    Provider,
    ProviderStartError,
    ProviderUnavailable,
    Throttled,
    TransientError,
)
from streams.runtime.config import load_pipeline
from tests.fakes.aws_media import AwsMediaFake, ModerationLabel
from tests.fixtures.s3 import CREDENTIALS, S3Service

PNG = b"\x89PNG\r\n\x1a\n"
INVOICE = (
    "ACME Corp invoice\n"
    "Invoice number: INV-2026-0042\n"
    "Total due: 1,250.00 EUR\n"
    "Paid: [ ]\n"
    "\f"
    "Page two of the terms\n"
    "Contact: billing@acme.example\n"
    "Contact: +49 30 1234567\n"
)


@pytest.fixture
def media(s3: S3Service) -> Iterator[AwsMediaFake]:
    fake = AwsMediaFake(s3.client())
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@asynccontextmanager
async def running(name: str, **options: Any) -> AsyncIterator[Provider]:
    provider = build(name, {**CREDENTIALS, **options})
    await provider.start()
    try:
        yield provider
    finally:
        await provider.close()


def put(s3: S3Service, bucket: str, key: str, content: bytes) -> str:
    s3.client().put_object(Bucket=bucket, Key=key, Body=content)
    return f"s3://{bucket}/{key}"


def fields_of(outcomes: list[Any]) -> list[dict[str, Any]]:
    assert all(isinstance(outcome, Enriched) for outcome in outcomes), outcomes
    return [outcome.fields for outcome in outcomes]


# --- Rekognition -----------------------------------------------------------------------------------------------------


async def test_rekognition_labels_from_moto_land_on_their_records(s3: S3Service) -> None:
    bucket = s3.create_bucket()
    photo = put(s3, bucket, "photos/desk.png", PNG + b"desk")
    records = [{"image": photo}, {"image": None}, {"image": PNG + b"inline"}]
    async with running("aws_rekognition", endpoint_url=s3.endpoint, image_field="image", max_labels=5) as provider:
        outcomes = await provider.enrich(records)
    options = {"endpoint_url": s3.endpoint, "image_field": "image", "output_format": "scored"}
    async with running("aws_rekognition", **options) as scored:
        [scored_outcome] = await scored.enrich([records[0]])
    assert fields_of(outcomes) == [{"labels": ["Mobile Phone"]}, {"labels": None}, {"labels": ["Mobile Phone"]}]
    assert [outcome.billed for outcome in outcomes] == [{"images": 1}, {}, {"images": 1}]
    assert provider.price_list().cost(outcomes[0].billed) == pytest.approx(0.001)
    assert isinstance(scored_outcome, Enriched)
    [label] = scored_outcome.fields["labels"]
    assert label["name"] == "Mobile Phone" and 99 < label["confidence"] <= 100


async def test_rekognition_moderation_fails_only_the_record_whose_image_is_missing_or_no_image(
    s3: S3Service, media: AwsMediaFake
) -> None:
    bucket = s3.create_bucket()
    flagged = put(s3, bucket, "a.png", PNG + b"flagged")
    clean = put(s3, bucket, "b.png", PNG + b"clean")
    not_image = put(s3, bucket, "c.txt", b"just text")
    media.moderation[PNG + b"flagged"] = [
        ModerationLabel("Weapons", "Violence", 97.5),
        ModerationLabel("Graphic Violence", "Violence", 61.0),
        ModerationLabel("Smoking", "Drugs & Tobacco", 40.0),
    ]
    records = [{"img": flagged}, {"img": f"s3://{bucket}/missing.png"}, {"img": not_image}, {"img": clean}]
    options = {"endpoint_url": media.endpoint, "operation": "moderation", "image_field": "img", "min_confidence": 60}
    async with running("aws_rekognition", **options) as provider:
        outcomes = await provider.enrich(records)
    first, missing, wrong, last = outcomes
    assert isinstance(first, Enriched) and first.fields == {"labels": ["Weapons", "Graphic Violence"]}
    assert isinstance(last, Enriched) and last.fields == {"labels": []}
    assert isinstance(missing, EnrichFailure) and missing.error_class == "InvalidS3ObjectException"
    assert f"s3://{bucket}/missing.png" in missing.message and not missing.unreachable
    assert isinstance(wrong, EnrichFailure) and wrong.error_class == "InvalidImageFormatException"
    sent = media.calls("RekognitionService.DetectModerationLabels")[1:]  # after start's probe
    assert [body["Image"] for body in sent] == [
        {"S3Object": {"Bucket": bucket, "Name": name}} for name in ("a.png", "missing.png", "c.txt", "b.png")
    ]
    assert {body["MinConfidence"] for body in sent} == {60}


async def test_rekognition_field_neither_reference_nor_bytes_fails_its_record_without_a_call(
    media: AwsMediaFake,
) -> None:
    options = {"endpoint_url": media.endpoint, "operation": "moderation", "image_field": "img"}
    async with running("aws_rekognition", **options) as provider:
        calls = len(media.requests)
        [outcome] = await provider.enrich([{"img": "https://example.com/a.png"}])
    assert isinstance(outcome, EnrichFailure) and outcome.error_class == "BadReference"
    assert len(media.requests) == calls


def test_rekognition_max_labels_is_refused_for_moderation() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_labels applies to operation labels"):
        build("aws_rekognition", {"operation": "moderation", "image_field": "img", "max_labels": 3})


@pytest.mark.parametrize(
    ("name", "options"), [("aws_rekognition", {"image_field": "img"}), ("aws_textract", {"document_field": "doc"})]
)
def test_redaction_is_refused_where_the_input_is_a_reference_not_text(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match="redact does not apply"):
        build(name, {**options, "redact": ["email"]})


# --- Textract --------------------------------------------------------------------------------------------------------


async def test_textract_text_joins_lines_bills_pages_and_fails_a_missing_document_alone(
    s3: S3Service, media: AwsMediaFake
) -> None:
    bucket = s3.create_bucket()
    invoice = put(s3, bucket, "scans/invoice.png", INVOICE.encode())
    records = [{"doc": {"ref": invoice}}, {"doc": {"ref": f"s3://{bucket}/scans/gone.png"}}, {"doc": {"ref": None}}]
    async with running("aws_textract", endpoint_url=media.endpoint, document_field="doc.ref") as provider:
        outcomes = await provider.enrich(records)
    text, gone, empty = outcomes
    assert isinstance(text, Enriched)
    assert text.fields == {
        "document_text": "ACME Corp invoice\nInvoice number: INV-2026-0042\nTotal due: 1,250.00 EUR\nPaid:\n"
        "Page two of the terms\nContact: billing@acme.example\nContact: +49 30 1234567"
    }
    assert text.billed == {"pages": 2}
    assert provider.price_list().cost(text.billed) == pytest.approx(0.003)
    assert isinstance(gone, EnrichFailure) and gone.error_class == "InvalidS3ObjectException"
    assert isinstance(empty, Enriched) and empty.fields == {"document_text": None}
    assert len(media.calls("Textract.DetectDocumentText")) == 3  # the start probe and two documents, not the null


async def test_textract_forms_builds_the_key_value_map_from_block_relationships(
    s3: S3Service, media: AwsMediaFake
) -> None:
    bucket = s3.create_bucket()
    invoice = put(s3, bucket, "invoice.png", INVOICE.encode())
    options = {"endpoint_url": media.endpoint, "operation": "forms", "document_field": "scan", "forms_output": "kv"}
    async with running("aws_textract", **options) as provider:
        [outcome] = await provider.enrich([{"scan": invoice}])
        assert provider.output_fields() == ["document_text", "kv"]
    assert isinstance(outcome, Enriched)
    assert outcome.fields["kv"] == {
        "Invoice number": "INV-2026-0042",
        "Total due": "1,250.00 EUR",
        "Paid": "NOT_SELECTED",
        "Contact": "billing@acme.example\n+49 30 1234567",
    }
    assert outcome.fields["document_text"].startswith("ACME Corp invoice\nInvoice number: INV-2026-0042")
    assert outcome.billed == {"pages": 2}
    assert provider.price_list().cost(outcome.billed) == pytest.approx(0.10)
    [request] = media.calls("Textract.AnalyzeDocument")[1:]
    assert request == {"Document": {"S3Object": {"Bucket": bucket, "Name": "invoice.png"}}, "FeatureTypes": ["FORMS"]}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("aws_textract", {"operation": "forms", "document_field": "ref"}),
        ("aws_rekognition", {"operation": "moderation", "image_field": "ref"}),
    ],
)
@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [
        ("ThrottlingException", 400, Throttled),
        ("ProvisionedThroughputExceededException", 400, Throttled),
        ("InternalServerError", 500, TransientError),
        ("ServiceUnavailableException", 503, TransientError),
    ],
)
async def test_media_throttles_and_5xx_are_the_stages_kinds(
    s3: S3Service,
    media: AwsMediaFake,
    name: str,
    options: dict[str, Any],
    code: str,
    status: int,
    raised: type[Exception],
) -> None:
    reference = put(s3, s3.create_bucket(), "x.png", PNG)
    async with running(name, endpoint_url=media.endpoint, **options) as provider:
        media.fail_next(code, status)
        with pytest.raises(raised, match=code):
            await provider.enrich([{"ref": reference}])


# --- SageMaker -------------------------------------------------------------------------------------------------------


def queue_moto_results(s3: S3Service, region: str, *bodies: Any) -> None:
    """Answers moto's InvokeEndpoint gives, in order, to requests it has not seen (its documented results API).

    moto remembers the answer to a request body in a region, whatever the endpoint, so each test takes its own
    region: start's empty batch is then a new request in every test."""
    results = [{"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies]
    answer = requests.post(
        f"{s3.endpoint}/moto-api/static/sagemaker/endpoint-results",
        json={"region": region, "results": results},
        timeout=5,
    )
    answer.raise_for_status()


async def test_sagemaker_outputs_read_by_path_land_on_their_records(s3: S3Service) -> None:
    queue_moto_results(
        s3,
        "eu-west-1",
        {"predictions": []},  # start's empty batch
        {"predictions": [{"intent": "buy", "scores": [0.1, 0.9]}, {"intent": "churn", "scores": [0.7, 0.3]}]},
    )
    options = {
        "endpoint_url": s3.endpoint,
        "region": "eu-west-1",
        "endpoint_name": "intent-moto-paths",
        "input_fields": {"text": "notes", "stage": "lifecycle_stage"},
        "output_fields": {"intent": "predictions[].intent", "intent_score": "predictions[].scores.1"},
    }
    records = [
        {"notes": "wants a quote", "lifecycle_stage": "lead"},
        {"notes": None, "lifecycle_stage": None},
        {"notes": "cancelling", "lifecycle_stage": "customer"},
    ]
    async with running("aws_sagemaker", **options) as provider:
        outcomes = await provider.enrich(records)
    assert fields_of(outcomes) == [
        {"intent": "buy", "intent_score": 0.9},
        {"intent": None, "intent_score": None},
        {"intent": "churn", "intent_score": 0.3},
    ]
    assert [outcome.billed for outcome in outcomes] == [{"calls": 0.5}, {}, {"calls": 0.5}]
    assert provider.price_list().cost(outcomes[0].billed) == 0.0
    assert provider.model == "sagemaker/intent-moto-paths"


async def test_sagemaker_list_length_mismatch_fails_every_record_with_the_reason(s3: S3Service) -> None:
    queue_moto_results(s3, "eu-central-1", {"predictions": []}, {"predictions": [{"score": 0.4}, {"score": 0.6}]})
    options = {
        "endpoint_url": s3.endpoint,
        "region": "eu-central-1",
        "endpoint_name": "score-moto-mismatch",
        "input_fields": {"text": "notes"},
        "output_fields": {"score": "predictions[].score"},
    }
    async with running("aws_sagemaker", **options) as provider:
        outcomes = await provider.enrich([{"notes": "a"}, {"notes": "b"}, {"notes": "c"}])
    assert all(isinstance(outcome, EnrichFailure) for outcome in outcomes)
    assert {outcome.message for outcome in outcomes if isinstance(outcome, EnrichFailure)} == {
        "endpoint score-moto-mismatch: response list 'predictions[].score' has 2 items for 3 records sent"
    }


def sagemaker_error(code: str, status: int, message: str) -> Response:
    return Response(
        json.dumps({"message": message}),
        status=status,
        headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/"},
        content_type="application/json",
    )


@pytest.fixture
def endpoint_fake(httpserver: HTTPServer) -> HTTPServer:
    """InvokeEndpoint over REST-JSON; the first request of each test is start's empty batch."""
    httpserver.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_json([])
    return httpserver


CLF = {"endpoint_name": "clf", "input_fields": {"text": "notes"}, "output_fields": {"score": "predictions[].score"}}


def sent_bodies(server: HTTPServer) -> list[Any]:
    return [json.loads(request.get_data()) for request, _ in server.log]


async def test_sagemaker_request_is_the_template_with_the_batchs_instances(endpoint_fake: HTTPServer) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_json(
        [{"label": "spam", "score": 0.98}, {"label": "ham", "score": 0.91}]
    )
    options = {
        "endpoint_url": endpoint_fake.url_for("/").rstrip("/"),
        "endpoint_name": "clf",
        "target_variant": "blue",
        "input_fields": {"subject": "mail.subject", "length": "mail.length"},
        "instance_format": "array",
        "request_template": {"inputs": "$instances", "parameters": {"top_k": 1}},
        "output_fields": {"label": "[].label", "score": "[].score"},
    }
    records = [{"mail": {"subject": "WIN NOW", "length": 12}}, {"mail": {"subject": "minutes", "length": 940}}]
    async with running("aws_sagemaker", **options) as provider:
        outcomes = await provider.enrich(records)
    assert fields_of(outcomes) == [{"label": "spam", "score": 0.98}, {"label": "ham", "score": 0.91}]
    probe, call = sent_bodies(endpoint_fake)
    assert probe == {"inputs": [], "parameters": {"top_k": 1}}
    assert call == {"inputs": [["WIN NOW", 12], ["minutes", 940]], "parameters": {"top_k": 1}}
    request, _ = endpoint_fake.log[1]
    assert request.headers["X-Amzn-SageMaker-Target-Variant"] == "blue"
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("code", "status", "raised"),
    [("ThrottlingException", 400, Throttled), ("InternalFailure", 500, TransientError)],
)
async def test_sagemaker_throttle_and_5xx_are_the_stages_kinds(
    endpoint_fake: HTTPServer, code: str, status: int, raised: type[Exception]
) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_response(
        sagemaker_error(code, status, "slow down" if status == 400 else "internal failure")
    )
    options = {
        "endpoint_url": endpoint_fake.url_for("/").rstrip("/"),
        "endpoint_name": "clf",
        "input_fields": {"text": "notes"},
        "output_fields": {"score": "predictions[].score"},
    }
    async with running("aws_sagemaker", **options) as provider:
        with pytest.raises(raised, match=code):
            await provider.enrich([{"notes": "x"}, {"notes": "y"}])


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("ModelError", 424, "Received client error (400) from primary with message: bad input"),
        ("ValidationError", 400, "Received payload size of 6291457 bytes exceeds the 6291456 byte limit"),
    ],
)
async def test_sagemaker_request_refused_for_one_record_fails_that_record(
    endpoint_fake: HTTPServer, code: str, status: int, message: str
) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_response(
        sagemaker_error(code, status, message)
    )
    async with running("aws_sagemaker", endpoint_url=endpoint_fake.url_for("/").rstrip("/"), **CLF) as provider:
        [outcome] = await provider.enrich([{"notes": "x" * 1000}])
    assert isinstance(outcome, EnrichFailure) and outcome.error_class == code
    assert outcome.message == f"endpoint clf: {message}"


@pytest.mark.parametrize(
    ("answer", "reasons"),
    [
        (
            {"predictions": [{"score": 0.2}, {"label": "x"}]},
            [None, "endpoint clf: response item 1 lacks predictions[].score"],
        ),
        ({"outputs": [1, 2]}, ["endpoint clf: response has no list at 'predictions[].score'"] * 2),
    ],
)
async def test_sagemaker_answer_without_a_value_fails_the_records_it_leaves_out(
    endpoint_fake: HTTPServer, answer: Any, reasons: list[str | None]
) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_json(answer)
    async with running("aws_sagemaker", endpoint_url=endpoint_fake.url_for("/").rstrip("/"), **CLF) as provider:
        outcomes = await provider.enrich([{"notes": "a"}, {"notes": "b"}])
    assert [outcome.message if isinstance(outcome, EnrichFailure) else None for outcome in outcomes] == reasons


async def test_sagemaker_answer_that_is_not_json_fails_every_record(endpoint_fake: HTTPServer) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_data(
        "<html>gateway</html>", content_type="text/html"
    )
    async with running("aws_sagemaker", endpoint_url=endpoint_fake.url_for("/").rstrip("/"), **CLF) as provider:
        outcomes = await provider.enrich([{"notes": "a"}, {"notes": "b"}])
    assert [type(outcome).__name__ for outcome in outcomes] == ["EnrichFailure", "EnrichFailure"]
    assert all(getattr(outcome, "error_class", None) == "SageMakerResponseMismatch" for outcome in outcomes)


async def test_sagemaker_model_error_on_a_batch_is_raised_for_the_stage_to_split(endpoint_fake: HTTPServer) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_response(
        sagemaker_error("ModelError", 424, "Received client error (400) from primary: bad input")
    )
    async with running("aws_sagemaker", endpoint_url=endpoint_fake.url_for("/").rstrip("/"), **CLF) as provider:
        with pytest.raises(ClientError, match="ModelError"):
            await provider.enrich([{"notes": "a"}, {"notes": "b"}])


async def test_sagemaker_endpoint_gone_mid_stream_is_an_outage(endpoint_fake: HTTPServer) -> None:
    endpoint_fake.expect_ordered_request("/endpoints/clf/invocations", method="POST").respond_with_response(
        sagemaker_error("ValidationError", 400, "Endpoint clf of account 123456789012 not found.")
    )
    async with running("aws_sagemaker", endpoint_url=endpoint_fake.url_for("/").rstrip("/"), **CLF) as provider:
        with pytest.raises(ProviderUnavailable, match=r"clf of account .* not found"):
            await provider.enrich([{"notes": "a"}])


async def test_sagemaker_start_names_an_endpoint_that_does_not_exist(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/endpoints/nope/invocations", method="POST").respond_with_response(
        sagemaker_error("ValidationError", 400, "Endpoint nope of account 123456789012 not found.")
    )
    provider = build(
        "aws_sagemaker",
        {
            **CREDENTIALS,
            "endpoint_url": httpserver.url_for("/").rstrip("/"),
            "endpoint_name": "nope",
            "input_fields": {"text": "notes"},
            "output_fields": {"score": "predictions[].score"},
        },
    )
    with pytest.raises(ProviderStartError, match=r"endpoint nope: ValidationError: Endpoint nope .* not found"):
        await provider.start()
    await provider.close()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"request_template": {"instances": []}}, "must contain the string '\\$instances' exactly once"),
        ({"output_fields": {"score": "predictions.score"}}, "needs exactly one \\[\\]"),
        ({"output_fields": {"score": "predictions[]score"}}, "write it as list\\[\\].member"),
    ],
)
def test_sagemaker_config_refuses_templates_and_paths_it_cannot_use(options: dict[str, Any], error: str) -> None:
    base = {"endpoint_name": "e", "input_fields": {"text": "notes"}, "output_fields": {"score": "predictions[].score"}}
    with pytest.raises(pydantic.ValidationError, match=error):
        build("aws_sagemaker", {**base, **options})


# --- through the stage -----------------------------------------------------------------------------------------------


async def test_stage_dead_letters_only_the_missing_document_and_prices_the_pages(
    s3: S3Service, media: AwsMediaFake
) -> None:
    bucket = s3.create_bucket()
    invoice = put(s3, bucket, "invoice.png", INVOICE.encode())
    provider = build(
        "aws_textract", {**CREDENTIALS, "endpoint_url": media.endpoint, "operation": "forms", "document_field": "scan"}
    )
    stage = EnrichStage([provider], pipeline="media")
    records = [{"scan": invoice}, {"scan": f"s3://{bucket}/nothing-here.png"}]
    try:
        failures, headers = await stage.run(records)
    finally:
        await stage.close()
    assert failures[0] is None and records[0]["document_forms"]["Invoice number"] == "INV-2026-0042"
    assert failures[1] is not None and failures[1].error_class == "InvalidS3ObjectException"
    assert json.loads(headers[0])[0]["usd"] == pytest.approx(0.10)


async def test_stage_splits_a_batch_the_model_refuses_so_only_the_bad_record_fails(httpserver: HTTPServer) -> None:
    def invoke(request: Request) -> Response:
        texts = [instance["text"] for instance in json.loads(request.get_data())["instances"]]
        if "\x00" in texts:
            return sagemaker_error("ModelError", 424, "Received client error (400) from primary: cannot tokenize")
        return Response(json.dumps({"predictions": [{"score": len(text)} for text in texts]}), status=200)

    httpserver.expect_request("/endpoints/clf/invocations", method="POST").respond_with_handler(invoke)
    provider = build("aws_sagemaker", {**CREDENTIALS, "endpoint_url": httpserver.url_for("/").rstrip("/"), **CLF})
    stage = EnrichStage([provider], pipeline="media")
    records: list[dict[str, Any]] = [{"notes": "hello"}, {"notes": "\x00"}, {"notes": "hi"}]
    try:
        failures, _ = await stage.run(records)
    finally:
        await stage.close()
    assert [record.get("score") for record in records] == [5, None, 2]
    assert failures[0] is None and failures[2] is None
    assert failures[1] is not None and failures[1].error_class == "ModelError"
    assert [len(body["instances"]) for body in sent_bodies(httpserver)] == [0, 3, 1, 1, 1]


# --- start: credentials and reachability -----------------------------------------------------------------------------

PROVIDERS = [
    ("aws_rekognition", {"image_field": "img"}),
    ("aws_textract", {"document_field": "doc"}),
    ("aws_sagemaker", {"endpoint_name": "e", "input_fields": {"t": "t"}, "output_fields": {"s": "[]"}}),
]


@pytest.mark.parametrize(("name", "options"), PROVIDERS)
async def test_start_refuses_an_unreachable_endpoint_in_one_line(name: str, options: dict[str, Any]) -> None:
    provider = build(name, {**CREDENTIALS, "endpoint_url": f"http://127.0.0.1:{free_port()}", **options})
    with pytest.raises(ProviderStartError) as refused:
        await provider.start()
    await provider.close()
    assert "127.0.0.1" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("name", "options"), PROVIDERS)
async def test_start_refuses_missing_credentials(
    name: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    provider = build(name, {"endpoint_url": f"http://127.0.0.1:{free_port()}", **options})
    with pytest.raises(ProviderStartError, match="no AWS credentials"):
        await provider.start()


@pytest.mark.parametrize(
    ("example", "providers"),
    [
        ("enrich-aws-textract.yaml", ["aws_textract"]),
        ("enrich-aws-rekognition.yaml", ["aws_rekognition", "aws_rekognition"]),
        ("enrich-aws-sagemaker.yaml", ["aws_sagemaker"]),
    ],
)
def test_example_pipelines_load_and_their_schemas_have_the_outputs(example: str, providers: list[str]) -> None:
    config = load_pipeline(Path(__file__).parent.parent / "examples" / example)
    schema = config.load_schema(config.output.schema_)
    fastavro.parse_schema(schema)
    built = [build(step.provider, step.config()) for step in config.enrich]
    assert [provider.name for provider in built] == providers
    assert {output for provider in built for output in provider.output_fields()} <= {
        field["name"] for field in schema["fields"]
    }
