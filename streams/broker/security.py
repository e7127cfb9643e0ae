"""A SASL_SSL listener for the embedded broker: TLS from PEM files, SCRAM-SHA-512 users created at format time.

The client listener speaks SASL_SSL and is also the inter-broker listener (the transaction coordinator connects to
its own broker to write markers), so the broker authenticates as an internal SCRAM user whose random password is
kept in the data dir. The KRaft controller listener stays PLAINTEXT on loopback.

Passwords never reach a command line or a log: users are handed to `kafka-storage format --add-scram` as salt and
salted password (what SCRAM stores), computed here, and the inter-broker credential sits only in files readable by
the owner.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.broker.errors import BrokerError

MECHANISM = "SCRAM-SHA-512"
LISTENER = "SASL_SSL"
INTER_BROKER_USER = "headwater-broker"
SECURITY_FILE = "headwater-security.json"
SCRAM_ITERATIONS = 8192
_USER_NAME = re.compile(r"^[A-Za-z0-9._@-]+$")
_PKCS8_KEY = "-----BEGIN PRIVATE KEY-----"


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SaslSsl:
    """A SASL_SSL (SCRAM-SHA-512) client listener: the broker's certificate chain and PKCS#8 key as PEM files,
    the CA that signed them (for the broker's own inter-broker connections), and the users to create."""

    certificate_chain: Path
    private_key: Path
    ca: Path
    users: Sequence[ScramUser]

    def check(self) -> None:
        """One clear line for each way these files or users cannot make a listener, before Java starts."""
        for label, path in (("certificate chain", self.certificate_chain), ("private key", self.private_key),
                            ("CA", self.ca)):
            if not path.is_file():
                raise BrokerError(f"the broker's {label} file {path} does not exist")
        if _PKCS8_KEY not in self.private_key.read_text(encoding="utf-8", errors="replace"):
            raise BrokerError(
                f"the broker's private key {self.private_key} must be an unencrypted PKCS#8 PEM key "
                f"({_PKCS8_KEY}); convert it with `openssl pkcs8 -topk8 -nocrypt`"
            )
        if not self.users:
            raise BrokerError("a SASL_SSL listener needs at least one SCRAM user")
        for user in self.users:
            if not _USER_NAME.match(user.name) or user.name == INTER_BROKER_USER:
                raise BrokerError(
                    f"SCRAM user name {user.name!r} is not allowed: letters, digits and . _ @ - only, "
                    f"and not {INTER_BROKER_USER!r}"
                )
            if not user.password:
                raise BrokerError(f"SCRAM user {user.name!r} has an empty password")


def load_scram_users(path: Path) -> list[ScramUser]:
    """`user:password` lines (blank lines and `#` comments skipped), as the registry's users file."""
    if not path.is_file():
        raise BrokerError(f"SCRAM users file {path} does not exist")
    users: list[ScramUser] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, password = entry.partition(":")
        if not sep or not name or not password:
            raise BrokerError(f"SCRAM users file {path} line {number} is not user:password")
        users.append(ScramUser(name, password))
    return users


def _add_scram_argument(user: ScramUser) -> str:
    """`--add-scram` value with salt and salted password, so the password itself is on no command line."""
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", user.password.encode("utf-8"), salt, SCRAM_ITERATIONS)
    encode = base64.b64encode
    return (
        f"{MECHANISM}=[name={user.name},iterations={SCRAM_ITERATIONS},"
        f"salt={encode(salt).decode()},saltedpassword={encode(salted).decode()}]"
    )


def _properties_value(text: str) -> str:
    """A multi-line PEM as one Java properties value (`\\n` escapes)."""
    return text.strip().replace("\\", "\\\\").replace("\n", "\\n")


class BrokerSecurity:
    """The SASL_SSL side of one data dir: its inter-broker credential, format arguments and server properties."""

    def __init__(self, listener: SaslSsl, data_dir: Path) -> None:
        listener.check()
        self.listener = listener
        self.path = data_dir / SECURITY_FILE

    def _read(self) -> dict[str, object] | None:
        if not self.path.is_file():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BrokerError(f"broker security file {self.path} is unreadable: {exc}") from exc
        if not isinstance(data, dict):
            raise BrokerError(f"broker security file {self.path} is unreadable")
        return data

    def prepare(self, formatted: bool) -> list[str]:
        """The `--add-scram` arguments of a first format, or none on a formatted data dir whose users match."""
        names = sorted(user.name for user in self.listener.users)
        recorded = self._read()
        if formatted:
            if recorded is None or recorded.get("users") != names:
                had = recorded.get("users") if recorded else "none"
                raise BrokerError(
                    f"SCRAM users are created when the data dir is formatted; {self.path.parent} has users {had}, "
                    f"not {names}: use a new --data-dir"
                )
            return []
        data = {"users": names, "inter_broker_password": secrets.token_urlsafe(32)}
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        internal = ScramUser(INTER_BROKER_USER, str(data["inter_broker_password"]))
        return [f"--add-scram={_add_scram_argument(user)}" for user in [internal, *self.listener.users]]

    def inter_broker_password(self) -> str:
        recorded = self._read()
        if recorded is None or not isinstance(recorded.get("inter_broker_password"), str):
            raise BrokerError(f"broker security file {self.path} is missing; use a new --data-dir")
        return str(recorded["inter_broker_password"])

    def server_properties(self) -> dict[str, str]:
        password = self.inter_broker_password()
        prefix = f"listener.name.{LISTENER.lower()}"
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{INTER_BROKER_USER}" password="{password}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"{prefix}.sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            f"{prefix}.ssl.keystore.type": "PEM",
            f"{prefix}.ssl.keystore.certificate.chain": _properties_value(
                self.listener.certificate_chain.read_text(encoding="utf-8")
            ),
            f"{prefix}.ssl.keystore.key": _properties_value(self.listener.private_key.read_text(encoding="utf-8")),
            f"{prefix}.ssl.truststore.type": "PEM",
            f"{prefix}.ssl.truststore.location": str(self.listener.ca.resolve()),
        }

    def client_properties(self) -> dict[str, str]:
        """librdkafka properties of the broker's own probe connection (readiness), as the internal user."""
        return {
            "security.protocol": LISTENER,
            "sasl.mechanism": MECHANISM,
            "sasl.username": INTER_BROKER_USER,
            "sasl.password": self.inter_broker_password(),
            "ssl.ca.location": str(self.listener.ca.resolve()),
        }
