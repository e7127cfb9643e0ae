"""Every produce error is one of two kinds: retriable (send again after a bounded backoff) or permanent (this record
will never be accepted as it is: too large, unknown topic, not authorised), which makes an output a dead letter.

Each failure also carries a short class name (`RecordTooLarge`, `UnknownTopic`, `NotAuthorized`, or the client's own
error name) for the `hw-error-class` header of the dead letter it causes and for the retry metric's label.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import errors as aiokafka_errors
from confluent_kafka import KafkaError

RECORD_TOO_LARGE = "RecordTooLarge"
UNKNOWN_TOPIC = "UnknownTopic"
NOT_AUTHORIZED = "NotAuthorized"
INVALID_RECORD = "InvalidRecord"

_CLASS_OF_CODE = {
    KafkaError.MSG_SIZE_TOO_LARGE: RECORD_TOO_LARGE,
    KafkaError.INVALID_MSG_SIZE: RECORD_TOO_LARGE,
    KafkaError.INVALID_RECORD: INVALID_RECORD,
    KafkaError.UNKNOWN_TOPIC_OR_PART: UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_TOPIC: UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION: UNKNOWN_TOPIC,
    KafkaError.TOPIC_EXCEPTION: UNKNOWN_TOPIC,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: NOT_AUTHORIZED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: NOT_AUTHORIZED,
}
# Permanent too: an argument librdkafka refuses outright, whatever the broker says.
_PERMANENT_CODES = frozenset({*_CLASS_OF_CODE, KafkaError._INVALID_ARG})
_CLASS_OF_AIOKAFKA: tuple[tuple[type[BaseException], str], ...] = (
    (aiokafka_errors.MessageSizeTooLargeError, RECORD_TOO_LARGE),
    (aiokafka_errors.InvalidTopicError, UNKNOWN_TOPIC),
    (aiokafka_errors.TopicAuthorizationFailedError, NOT_AUTHORIZED),
    (aiokafka_errors.ClusterAuthorizationFailedError, NOT_AUTHORIZED),
    (aiokafka_errors.CorruptRecordException, INVALID_RECORD),
)


@dataclass(frozen=True)
class ProduceFailure:
    """Why the broker did not acknowledge one record, and whether sending it again could help."""

    error: str
    permanent: bool
    too_large: bool = False
    error_class: str = "ProduceError"


def from_kafka_error(error: KafkaError) -> ProduceFailure:
    """A confluent-kafka (librdkafka) delivery error or `produce()` refusal, classified."""
    code = error.code()
    error_class = _CLASS_OF_CODE.get(code, error.name())
    return ProduceFailure(
        f"{error.name()}: {error.str()}", code in _PERMANENT_CODES or error.fatal(),
        error_class == RECORD_TOO_LARGE, error_class,
    )


def from_exception(exc: BaseException) -> ProduceFailure:
    """An aiokafka (or Faust) send failure, classified; `ProducerSendError` is read through its cause."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    error_class = next(
        (name for kind, name in _CLASS_OF_AIOKAFKA if isinstance(cause, kind)), type(cause).__name__
    )
    permanent = any(isinstance(cause, kind) for kind, _ in _CLASS_OF_AIOKAFKA)
    return ProduceFailure(f"{type(cause).__name__}: {cause}", permanent, error_class == RECORD_TOO_LARGE, error_class)
