"""The `aws_comprehend` and `aws_translate` providers: boto3 pointed with `endpoint_url` at a fake speaking AWS JSON 1.1
(`X-Amz-Target` routing, the documented ResultList/ErrorList and error shapes). Results land on their records, a
per-item error fails only its record, billing follows the services' rules, throttles and 5xx are the stage's kinds,
start failures are one line, and over-long texts are cut (Comprehend) or split on sentences (Translate)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from schemas import catalog
from streams.enrich import EnrichStage, build
from streams.enrich.aws_comprehend import ComprehendProvider
from streams.enrich.aws_translate import TranslateProvider
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
from streams.runtime.enrich_fields import check_inputs, providers_of
from tests.fakes.aws_json import AwsError, AwsJsonService

COMPREHEND = "Comprehend_20171127."
TRANSLATE = "AWSShineFrontendService_20170701.TranslateText"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "testing", "region": "eu-west-1"}
EXAMPLE = Path(__file__).parent.parent / "examples" / "enrich-aws-comprehend.yaml"


@pytest.fixture
def aws(httpserver: HTTPServer) -> AwsJsonService:
    return AwsJsonService(httpserver)


@asynccontextmanager
async def running(name: str, service: AwsJsonService, **options: Any) -> AsyncIterator[Provider]:
    """A started provider against the fake, with the fake's log cleared of the start probe."""
    provider = build(name, {**CREDENTIALS, "endpoint_url": service.endpoint_url, **options})
    await provider.start()
    service.clear_requests()
    try:
        yield provider
    finally:
        await provider.close()


def batch_answer(body: dict[str, Any], result: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """A Batch* answer: documents containing BROKEN in the ErrorList, the others' `result(text)` in the ResultList;
    a document over 5,000 bytes refuses the whole call, as Comprehend does."""
    texts: list[str] = body["TextList"]
    if len(texts) > 25:
        raise AwsError("BatchSizeLimitExceededException", "more than 25 documents")
    if any(len(text.encode()) > 5000 for text in texts):
        raise AwsError("TextSizeLimitExceededException", "document over 5000 bytes")
    errors = [
        {"Index": index, "ErrorCode": "InvalidRequestException", "ErrorMessage": "document cannot be analysed"}
        for index, text in enumerate(texts) if "BROKEN" in text
    ]
    failed = {error["Index"] for error in errors}
    results = [{"Index": index, **result(text)} for index, text in enumerate(texts) if index not in failed]
    return {"ResultList": results, "ErrorList": errors}


def sentiment_of(text: str) -> dict[str, Any]:
    positive, negative = (0.9, 0.05) if "great" in text else (0.1, 0.8) if "awful" in text else (0.2, 0.2)
    label = "POSITIVE" if positive > 0.5 else "NEGATIVE" if negative > 0.5 else "NEUTRAL"
    return {
        "Sentiment": label,
        "SentimentScore": {"Positive": positive, "Negative": negative, "Neutral": 1 - positive - negative, "Mixed": 0},
    }


def route_sentiment(service: AwsJsonService) -> None:
    service.route(COMPREHEND + "BatchDetectSentiment", lambda body: batch_answer(body, sentiment_of))


async def test_sentiment_results_land_on_their_records_and_an_error_item_fails_only_its_record(
    aws: AwsJsonService,
) -> None:
    route_sentiment(aws)
    records = [
        {"notes": "A great call, they will renew."},
        {"notes": None},
        {"notes": "BROKEN upload"},
        {"notes": "   "},
        {"notes": "An awful delivery " + "x" * 300},
        {"notes": "Meeting moved to Tuesday."},
    ]
    async with running("aws_comprehend", aws, operation="sentiment", text_field="notes", label_field="mood") as p:
        outcomes = await p.enrich(records)
    [request] = aws.requests
    assert request.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    [body] = aws.bodies(COMPREHEND + "BatchDetectSentiment")
    assert body["LanguageCode"] == "en"
    assert body["TextList"] == [records[i]["notes"] for i in (0, 2, 4, 5)], "empty texts are not sent"
    assert outcomes[0] == Enriched({"sentiment": 0.85, "mood": "POSITIVE"}, {"units": 3})
    assert outcomes[1] == Enriched({"sentiment": None, "mood": None}), "no text: null outputs, not billed"
    assert outcomes[2] == EnrichFailure("InvalidRequestException", "comprehend batch_detect_sentiment: "
                                        "document cannot be analysed")
    assert outcomes[3] == Enriched({"sentiment": None, "mood": None})
    assert outcomes[4] == Enriched({"sentiment": -0.7, "mood": "NEGATIVE"}, {"units": 4}), "318 chars: 4 units"
    assert outcomes[5] == Enriched({"sentiment": 0.0, "mood": "NEUTRAL"}, {"units": 3}), "3-unit minimum"


async def test_records_are_sent_in_their_own_language_and_unsupported_languages_are_not_sent(
    aws: AwsJsonService,
) -> None:
    route_sentiment(aws)
    records = [
        {"notes": "Ein great Gespräch.", "lang": "de"},
        {"notes": "A great talk.", "lang": None},
        {"notes": "Ett great samtal.", "lang": "sv"},
        {"notes": "Un great appel.", "lang": "FR"},
        {"notes": "Noch ein awful Gespräch.", "lang": "de"},
    ]
    async with running("aws_comprehend", aws, operation="sentiment", text_field="notes", language_field="lang") as p:
        assert p.input_fields() == ["notes", "lang"]
        outcomes = await p.enrich(records)
    sent = {body["LanguageCode"]: body["TextList"] for body in aws.bodies(COMPREHEND + "BatchDetectSentiment")}
    assert sent == {
        "de": ["Ein great Gespräch.", "Noch ein awful Gespräch."],
        "en": ["A great talk."],
        "fr": ["Un great appel."],
    }
    assert [outcome.fields["sentiment"] for outcome in outcomes if isinstance(outcome, Enriched)] == [
        0.85, 0.85, None, 0.85, -0.7
    ]
    assert isinstance(outcomes[2], Enriched) and outcomes[2].billed == {}, "Swedish: not sent, not billed"


async def test_entities_key_phrases_and_dominant_language_are_read_from_their_answers(aws: AwsJsonService) -> None:
    aws.route(COMPREHEND + "BatchDetectEntities", lambda body: batch_answer(body, lambda text: {"Entities": [
        {"Score": 0.98765, "Type": "ORGANIZATION", "Text": "Acme", "BeginOffset": 0, "EndOffset": 4}
    ] if "Acme" in text else []}))
    aws.route(COMPREHEND + "BatchDetectKeyPhrases", lambda body: batch_answer(body, lambda text: {"KeyPhrases": [
        {"Score": 0.9, "Text": word, "BeginOffset": 0, "EndOffset": len(word)} for word in text.split()[:2]
    ]}))
    aws.route(COMPREHEND + "BatchDetectDominantLanguage", lambda body: batch_answer(body, lambda text: {"Languages": [
        {"LanguageCode": "en", "Score": 0.3}, {"LanguageCode": "de", "Score": 0.65432}
    ]}))
    records = [{"notes": "Acme renewal call"}, {"notes": "pricing question"}]
    async with running("aws_comprehend", aws, operation="entities", text_field="notes") as entities:
        assert await entities.enrich(records) == [
            Enriched({"entities": [{"text": "Acme", "type": "ORGANIZATION", "score": 0.9877}]}, {"units": 3}),
            Enriched({"entities": []}, {"units": 3}),
        ]
    async with running(
        "aws_comprehend", aws, operation="key_phrases", text_field="notes", output_field="phrases"
    ) as phrases:
        assert [outcome.fields for outcome in await phrases.enrich(records) if isinstance(outcome, Enriched)] == [
            {"phrases": ["Acme", "renewal"]}, {"phrases": ["pricing", "question"]}
        ]
    async with running(
        "aws_comprehend", aws, operation="language", text_field="notes", score_field="language_score"
    ) as language:
        assert language.output_fields() == ["language", "language_score"]
        outcomes = await language.enrich(records)
        assert outcomes[0] == Enriched({"language": "de", "language_score": 0.6543}, {"units": 3})
    assert "LanguageCode" not in aws.bodies(COMPREHEND + "BatchDetectDominantLanguage")[0]


async def test_pii_is_one_document_per_call(aws: AwsJsonService) -> None:
    def pii(body: dict[str, Any]) -> dict[str, Any]:
        start = body["Text"].find("@") - 3
        return {"Entities": [{"Score": 0.99, "Type": "EMAIL", "BeginOffset": start, "EndOffset": start + 15}]}

    aws.route(COMPREHEND + "DetectPiiEntities", pii)
    async with running("aws_comprehend", aws, operation="pii", text_field="notes", batch_size=25) as provider:
        assert provider.batch_limit() == 1
        outcomes = await provider.enrich([{"notes": "Mail ada@example.com today"}])
    sent = aws.bodies(COMPREHEND + "DetectPiiEntities")
    assert sent == [{"Text": "Mail ada@example.com today", "LanguageCode": "en"}]
    assert outcomes == [Enriched(
        {"pii_entities": [{"type": "EMAIL", "score": 0.99, "begin_offset": 5, "end_offset": 20}]}, {"units": 3}
    )]


async def test_a_document_over_5000_bytes_is_cut_on_a_character_boundary_not_refused(aws: AwsJsonService) -> None:
    route_sentiment(aws)
    long_text = "great! " + "é" * 4000  # 4,007 characters, 8,007 UTF-8 bytes
    async with running("aws_comprehend", aws, operation="sentiment", text_field="notes") as provider:
        assert provider.default_max_chars == 5000
        [outcome] = await provider.enrich([{"notes": long_text}])
    [sent] = aws.bodies(COMPREHEND + "BatchDetectSentiment")[0]["TextList"]
    assert len(sent.encode()) == 4999, "4,999 bytes: the 5,000th would split an é"
    assert long_text.startswith(sent)
    assert outcome == Enriched({"sentiment": 0.85}, {"units": 26}), "billed for the 2,503 characters sent"


async def test_throttling_and_server_errors_are_the_stage_kinds(aws: AwsJsonService) -> None:
    answer: dict[str, AwsError | None] = {"error": None}

    def sentiment(body: dict[str, Any]) -> dict[str, Any]:
        if answer["error"] is not None:
            raise answer["error"]
        return batch_answer(body, sentiment_of)

    aws.route(COMPREHEND + "BatchDetectSentiment", sentiment)
    async with running("aws_comprehend", aws, operation="sentiment", text_field="notes") as provider:
        answer["error"] = AwsError("ThrottlingException", "Rate exceeded", headers={"Retry-After": "2"})
        with pytest.raises(Throttled) as throttled:
            await provider.enrich([{"notes": "one"}, {"notes": "two"}])
        assert throttled.value.retry_after == 2.0
        answer["error"] = AwsError("InternalServerException", "boom", status=500)
        with pytest.raises(TransientError, match=r"500|InternalServerException"):
            await provider.enrich([{"notes": "one"}])
        answer["error"] = AwsError("ExpiredTokenException", "The security token included in the request is expired")
        with pytest.raises(ProviderUnavailable, match="unavailable: credentials refused: ExpiredTokenException"):
            await provider.enrich([{"notes": "one"}])
    assert len(aws.bodies(COMPREHEND + "BatchDetectSentiment")) == 3, "each tried once: the stage decides on retries"


async def test_start_without_credentials_fails_in_one_line_before_any_call(
    aws: AwsJsonService, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    route_sentiment(aws)
    for provider in (
        build("aws_comprehend", {"operation": "sentiment", "text_field": "notes", "endpoint_url": aws.endpoint_url}),
        build("aws_translate", {"text_field": "notes", "target_language": "en", "endpoint_url": aws.endpoint_url}),
    ):
        with pytest.raises(ProviderStartError, match="no AWS credentials") as failed:
            await provider.start()
        assert "\n" not in str(failed.value)
    assert aws.requests == []


async def test_start_against_an_unreachable_endpoint_or_refused_credentials_fails_in_one_line(
    aws: AwsJsonService,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = f"http://127.0.0.1:{closed_port}"
    for name, options in (
        ("aws_comprehend", {"operation": "key_phrases", "text_field": "notes"}),
        ("aws_translate", {"text_field": "notes", "target_language": "de"}),
    ):
        provider = build(name, {**CREDENTIALS, **options, "endpoint_url": unreachable})
        started = time.monotonic()
        with pytest.raises(ProviderStartError, match=f"at {unreachable}") as failed:
            await provider.start()
        assert "\n" not in str(failed.value) and time.monotonic() - started < 5
    aws.route(TRANSLATE, lambda body: (_ for _ in ()).throw(AwsError("UnrecognizedClientException", "bad token")))
    refused = build("aws_translate", {**CREDENTIALS, "text_field": "notes", "target_language": "de",
                                      "endpoint_url": aws.endpoint_url})
    with pytest.raises(ProviderStartError, match="credentials refused: UnrecognizedClientException"):
        await refused.start()


def translate(body: dict[str, Any]) -> dict[str, Any]:
    """TranslateText as documented: at most 10,000 bytes; `auto` detects German; the 'translation' is upper case."""
    text, source = body["Text"], body["SourceLanguageCode"]
    if len(text.encode()) > 10_000:
        raise AwsError("TextSizeLimitExceededException", "Input text size exceeds limit")
    if source == "xx":
        raise AwsError("UnsupportedLanguagePairException", "Unsupported language pair: xx to en")
    detected = "de" if source == "auto" else source
    target = body["TargetLanguageCode"]
    return {"TranslatedText": text.upper(), "SourceLanguageCode": detected, "TargetLanguageCode": target}


async def test_translate_detects_the_source_or_reads_it_from_a_field(aws: AwsJsonService) -> None:
    aws.route(TRANSLATE, translate)
    records = [
        {"notes": "Guten Tag, bitte rufen Sie zurück.", "lang": None},
        {"notes": "Bonjour.", "lang": "fr"},
        {"notes": "Already English.", "lang": "en"},
        {"notes": None, "lang": "fr"},
        {"notes": "Quelque chose.", "lang": "xx"},
    ]
    options = {"text_field": "notes", "target_language": "en", "source_language_field": "lang",
               "detected_language_field": "source_lang"}
    async with running("aws_translate", aws, **options) as provider:
        assert provider.batch_limit() == 1
        outcomes = [(await provider.enrich([record]))[0] for record in records]
    assert [(body["Text"], body["SourceLanguageCode"]) for body in aws.bodies(TRANSLATE)] == [
        ("Guten Tag, bitte rufen Sie zurück.", "auto"), ("Bonjour.", "fr"), ("Quelque chose.", "xx")
    ], "an English text is not sent to be translated into English"
    assert outcomes[0] == Enriched(
        {"translated_text": "GUTEN TAG, BITTE RUFEN SIE ZURÜCK.", "source_lang": "de"}, {"characters": 34}
    )
    assert outcomes[1] == Enriched({"translated_text": "BONJOUR.", "source_lang": "fr"}, {"characters": 8})
    assert outcomes[2] == Enriched({"translated_text": "Already English.", "source_lang": "en"})
    assert outcomes[3] == Enriched({"translated_text": None, "source_lang": None})
    assert isinstance(outcomes[4], EnrichFailure) and outcomes[4].error_class == "UnsupportedLanguagePairException"


def long_text() -> str:
    sentences = [f"Sentence {number} of the account history says the customer called again." for number in range(400)]
    return " ".join(sentences)


async def test_translate_splits_a_25_kb_text_on_sentence_boundaries(aws: AwsJsonService) -> None:
    aws.route(TRANSLATE, translate)
    text = long_text()
    assert 25_000 < len(text.encode()) < 30_000
    async with running("aws_translate", aws, text_field="notes", target_language="en") as provider:
        [outcome] = await provider.enrich([{"notes": text}])
    parts = [body["Text"] for body in aws.bodies(TRANSLATE)]
    assert len(parts) == 3 and all(len(part.encode()) <= 10_000 for part in parts)
    assert all(part.endswith(".") and part[0].isupper() for part in parts), "cut between sentences only"
    assert " ".join(sorted(parts, key=text.index)) == text, "the parts cover the text, cut where a space followed a ."
    assert outcome == Enriched({"translated_text": text.upper()}, {"characters": len(text) - 2}), "2 spaces not sent"


async def test_translate_dead_letters_an_oversize_text_when_told_to(aws: AwsJsonService) -> None:
    aws.route(TRANSLATE, translate)
    async with running(
        "aws_translate", aws, text_field="notes", target_language="en", on_oversize="dead_letter"
    ) as provider:
        [refused] = await provider.enrich([{"notes": long_text()}])
        [fits] = await provider.enrich([{"notes": "Hallo."}])
    assert isinstance(refused, EnrichFailure) and refused.error_class == "TextSizeLimitExceeded"
    assert "over Translate's 10000" in refused.message
    assert fits == Enriched({"translated_text": "HALLO."}, {"characters": 6})
    assert [body["Text"] for body in aws.bodies(TRANSLATE)] == ["Hallo."]


async def test_translate_throttles_and_outages_are_the_stage_kinds(aws: AwsJsonService) -> None:
    answer: dict[str, AwsError | None] = {"error": None}

    def flaky(body: dict[str, Any]) -> dict[str, Any]:
        if answer["error"] is not None:
            raise answer["error"]
        return translate(body)

    aws.route(TRANSLATE, flaky)
    async with running("aws_translate", aws, text_field="notes", target_language="en") as provider:
        answer["error"] = AwsError("TooManyRequestsException", "slow down")
        with pytest.raises(Throttled):
            await provider.enrich([{"notes": long_text()}])
        assert len(aws.bodies(TRANSLATE)) == 3, "every part ended before the throttle was raised"
        answer["error"] = AwsError("ServiceUnavailableException", "down", status=503)
        with pytest.raises(TransientError):
            await provider.enrich([{"notes": "Hallo."}])


def test_configs_are_checked_and_list_prices_dated() -> None:
    with pytest.raises(ValueError, match="label_field applies to operation sentiment only"):
        build("aws_comprehend", {"operation": "entities", "text_field": "notes", "label_field": "x"})
    with pytest.raises(ValueError, match="operation pii supports language_code en or es"):
        build("aws_comprehend", {"operation": "pii", "text_field": "notes", "language_code": "de"})
    comprehend = build("aws_comprehend", {"operation": "sentiment", "text_field": "notes"})
    translate_ = build("aws_translate", {"text_field": "notes", "target_language": "en"})
    assert isinstance(comprehend, ComprehendProvider) and isinstance(translate_, TranslateProvider)
    assert comprehend.remote and translate_.remote and comprehend.batch_limit() == 25
    assert comprehend.price_list().cost({"units": 3}) == pytest.approx(0.0003)
    assert translate_.price_list().cost({"characters": 1_000_000}) == pytest.approx(15.0)
    for prices in (comprehend.price_list(), translate_.price_list()):
        assert prices.read_on == "2026-12-01" and prices.source.startswith("https://aws.amazon.com/")


def test_the_example_pipeline_loads_and_its_steps_read_fields_its_records_have() -> None:
    config = load_pipeline(EXAMPLE)  # refuses an output field the output schema lacks
    providers = providers_of(config.enrich)
    assert [provider.name for provider in providers] == ["language", "aws_comprehend"]
    raw_fields = {spec["name"] for spec in catalog.load_schema("crm/contact")["fields"]}
    check_inputs(providers, raw_fields, set(), "crm/contact")


async def test_the_region_defaults_to_aws_region_as_the_example_says(
    aws: AwsJsonService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    route_sentiment(aws)
    options = {key: value for key, value in CREDENTIALS.items() if key != "region"}
    provider = build("aws_comprehend", {**options, "operation": "sentiment", "text_field": "notes",
                                        "endpoint_url": aws.endpoint_url})
    await provider.start()
    await provider.close()
    assert "/eu-central-1/comprehend/aws4_request" in aws.requests[0].headers["Authorization"]


async def test_through_the_stage_a_throttled_call_is_retried_and_each_record_priced(aws: AwsJsonService) -> None:
    throttles = {"left": 1}

    def sentiment(body: dict[str, Any]) -> dict[str, Any]:
        # the chunks of 25 and 5 are sent at once; only the 25's first try is throttled, whichever arrives first
        if len(body["TextList"]) == 25 and throttles["left"]:
            throttles["left"] -= 1
            raise AwsError("ThrottlingException", "Rate exceeded")
        return batch_answer(body, sentiment_of)

    aws.route(COMPREHEND + "BatchDetectSentiment", sentiment)
    provider = build("aws_comprehend", {**CREDENTIALS, "endpoint_url": aws.endpoint_url, "operation": "sentiment",
                                        "text_field": "notes"})
    stage = EnrichStage([provider], pipeline="aws_text")
    records = [{"notes": f"A great call number {number}."} for number in range(30)]
    try:
        failures, headers = await stage.run(records)
    finally:
        await stage.close()
    sizes = [len(body["TextList"]) for body in aws.bodies(COMPREHEND + "BatchDetectSentiment")]
    assert sorted(sizes) == [1, 5, 25, 25], "the start probe, the last 5, and the throttled call of 25 twice"
    assert failures == [None] * 30 and all(record["sentiment"] == 0.85 for record in records)
    assert {json.loads(header)[0]["usd"] for header in headers} == {0.0003}
