"""What every AWS provider shares: its connection options, a boto3 client that leaves retries to the stage, and the
mapping of AWS's answers onto the stage's vocabulary (throttled, transient, a record's own fault).

boto3 blocks, so each call runs in a worker thread (`call`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from pydantic import Field, SecretStr

from streams.enrich.base import ProviderConfig, ProviderStartError, Throttled, TransientError

T = TypeVar("T")
# boto3 blocks a thread per call in flight; asyncio's default executor has a handful (cores + 4), which would cap
# `concurrency` there. Threads start on demand, and the stage's `concurrency` bounds how many calls are in flight.
_CALL_THREADS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="hw-aws")

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "RequestLimitExceeded",
        "ServiceQuotaExceededException",
    }
)
CREDENTIAL_CODES = frozenset(
    {"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException", "ExpiredTokenException"}
)
"""Answers that blame the caller's credentials, not a record: at start a start failure, later an outage."""
TRANSIENT_CODES = frozenset(
    {"InternalServerException", "InternalServerError", "ServiceUnavailableException", "ModelNotReadyException"}
)


class AwsConfig(ProviderConfig):
    """Where and as whom an AWS provider calls; credentials default to boto3's chain (environment, profile, role)."""

    region: str = Field(
        default_factory=lambda: os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        description="AWS region of the service; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.",
    )
    endpoint_url: str | None = Field(None, description="Another endpoint (a VPC endpoint, LocalStack, a test fake).")
    access_key_id: SecretStr | None = Field(None, description="Access key; default boto3's credential chain.")
    secret_access_key: SecretStr | None = Field(None, description="Secret key, with access_key_id.")
    session_token: SecretStr | None = Field(None, description="Session token of temporary credentials.")


def client(service: str, config: AwsConfig) -> Any:
    """A boto3 client for `service` that tries once (the stage retries) and gives up at the call's deadline."""
    session = boto3.session.Session(
        aws_access_key_id=config.access_key_id.get_secret_value() if config.access_key_id else None,
        aws_secret_access_key=config.secret_access_key.get_secret_value() if config.secret_access_key else None,
        aws_session_token=config.session_token.get_secret_value() if config.session_token else None,
        region_name=config.region,
    )
    if session.get_credentials() is None:
        raise ProviderStartError(
            f"{service}: no AWS credentials (set access_key_id/secret_access_key, AWS_ACCESS_KEY_ID, or a profile)"
        )
    boto = BotoConfig(
        retries={"total_max_attempts": 1},
        connect_timeout=min(config.timeout_seconds, 10.0),
        read_timeout=config.timeout_seconds,
        max_pool_connections=max(10, config.concurrency),
    )
    make: Any = session.client  # boto3-stubs types clients per literal service name; ours comes from the provider
    return make(service, endpoint_url=config.endpoint_url, config=boto)


def cut_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes without splitting a character (AWS's text limits count bytes)."""
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _retry_after(exc: ClientError) -> float | None:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: BaseException, service: str) -> BaseException:
    """The stage's exception for an AWS failure of the whole call, or `exc` itself when it is not one (a record's
    own fault, which the provider turns into that record's `EnrichFailure`)."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES:  # before the status: ModelNotReadyException comes as a 429
            return TransientError(f"{service}: {code}: {exc}")
        if code in THROTTLING_CODES or status == 429:
            return Throttled(f"{service}: {code or status}", _retry_after(exc))
        if status >= 500:
            return TransientError(f"{service}: {code or status}: {exc}")
        return exc
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return TransientError(f"{service}: {type(exc).__name__}: {exc}")
    if isinstance(exc, NoCredentialsError):
        return ProviderStartError(f"{service}: no AWS credentials")
    if isinstance(exc, ParamValidationError):  # botocore refused the request it was given: not worth a retry
        return exc
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{service}: {type(exc).__name__}: {exc}")
    return exc


async def call(service_client: Any, operation: str, **params: Any) -> dict[str, Any]:
    """`service_client.<operation>(**params)` in a worker thread; whole-call failures raised as the stage's kinds.

    A `ClientError` that is neither a throttle nor a 5xx is raised as it is, for the provider to blame on a record."""
    method = getattr(service_client, operation)
    service = service_client.meta.service_model.service_name
    try:
        answer: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
            _CALL_THREADS, functools.partial(method, **params)
        )
    except (ClientError, BotoCoreError) as exc:
        mapped = classify(exc, service)
        if mapped is exc:
            raise
        raise mapped from exc
    return answer


async def blocking(function: Callable[[], T]) -> T:
    """Other blocking boto3 work (reading a streamed response body) on the calls' threads, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_CALL_THREADS, function)


async def gather_calls(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Several calls at once; the first failure is raised only when all have ended, because a boto3 call's thread
    cannot be cancelled and a retry must not overlap calls still running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


async def check_reachable(service_client: Any, operation: str, **params: Any) -> None:
    """At start: one cheap call, so that bad credentials or an unreachable endpoint are one line before consuming."""
    service = service_client.meta.service_model.service_name
    try:
        await call(service_client, operation, **params)
    except (TransientError, ProviderStartError) as exc:
        raise ProviderStartError(f"{service} at {service_client.meta.endpoint_url}: {exc}") from None
    except ClientError as exc:
        if error_code(exc) in CREDENTIAL_CODES:
            raise ProviderStartError(f"{service}: credentials refused: {error_code(exc)}") from None
    except Throttled:
        return
