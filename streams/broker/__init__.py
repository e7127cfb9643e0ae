"""An embedded single-node Apache Kafka broker (KRaft), run as a Java process from jars in a local cache."""

from streams.broker.embedded import BrokerStatus, EmbeddedBroker
from streams.broker.errors import BrokerError
from streams.broker.jars import KAFKA_VERSION, ensure_jars
from streams.broker.security import SaslSsl, ScramUser

__all__ = ["KAFKA_VERSION", "BrokerError", "BrokerStatus", "EmbeddedBroker", "SaslSsl", "ScramUser", "ensure_jars"]
