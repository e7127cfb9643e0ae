"""Every produce error is one of two kinds: retriable (send again after a bounded backoff) or permanent (this record
will never be accepted as it is: too large, unknown topic, not authorised), which makes an output a dead letter."""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import errors as aiokafka_errors
from confluent_kafka import KafkaError

_PERMANENT_CODES = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError._INVALID_ARG,
})
_TOO_LARGE_CODES = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE})
_PERMANENT_AIOKAFKA = (
    aiokafka_errors.MessageSizeTooLargeError,
    aiokafka_errors.InvalidTopicError,
    aiokafka_errors.TopicAuthorizationFailedError,
    aiokafka_errors.ClusterAuthorizationFailedError,
    aiokafka_errors.CorruptRecordException,
)


@dataclass(frozen=True)
class ProduceFailure:
    """Why the broker did not acknowledge one record, and whether sending it again could help."""

    error: str
    permanent: bool
    too_large: bool = False


def from_kafka_error(error: KafkaError) -> ProduceFailure:
    """A confluent-kafka (librdkafka) delivery error or `produce()` refusal, classified."""
    code = error.code()
    return ProduceFailure(
        f"{error.name()}: {error.str()}", code in _PERMANENT_CODES or error.fatal(), code in _TOO_LARGE_CODES
    )


def from_exception(exc: BaseException) -> ProduceFailure:
    """An aiokafka (or Faust) send failure, classified; `ProducerSendError` is read through its cause."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return ProduceFailure(
        f"{type(cause).__name__}: {cause}",
        isinstance(cause, _PERMANENT_AIOKAFKA),
        isinstance(cause, aiokafka_errors.MessageSizeTooLargeError),
    )
