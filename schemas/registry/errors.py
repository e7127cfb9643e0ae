"""Confluent Schema Registry error bodies: `{"error_code": ..., "message": ...}` with Confluent's codes."""

from __future__ import annotations

SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_LEVEL_CONFIG_NOT_FOUND = 40408
SUBJECT_LEVEL_MODE_NOT_FOUND = 40409
INCOMPATIBLE_SCHEMA = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_MODE = 42204
OPERATION_NOT_PERMITTED = 42205
REFERENCE_EXISTS = 42206
STORE_ERROR = 50001
STORE_TIMEOUT = 50002
FORWARD_ERROR = 50003
UNKNOWN_PRIMARY = 50004


class RegistryError(Exception):
    """An error answered to the HTTP client with Confluent's status and error code."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, object]:
        return {"error_code": self.code, "message": self.message}


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: object) -> RegistryError:
    return RegistryError(404, VERSION_NOT_FOUND, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(detail: str = "Schema not found") -> RegistryError:
    return RegistryError(404, SCHEMA_NOT_FOUND, detail)


def invalid_schema(reason: str) -> RegistryError:
    return RegistryError(422, INVALID_SCHEMA, f"Invalid schema: {reason}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        INVALID_VERSION,
        f"The specified version '{version}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def invalid_compatibility(level: object) -> RegistryError:
    return RegistryError(
        422,
        INVALID_COMPATIBILITY_LEVEL,
        f"Invalid compatibility level {level!r}. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, "
        "FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE",
    )


def invalid_mode(mode: object) -> RegistryError:
    return RegistryError(422, INVALID_MODE, f"Invalid mode {mode!r}. Valid values are READWRITE, READONLY, IMPORT")


def not_permitted(reason: str) -> RegistryError:
    return RegistryError(422, OPERATION_NOT_PERMITTED, reason)


def bad_request(reason: str) -> RegistryError:
    return RegistryError(400, 400, reason)
