"""Replace fields with a keyed hash (pseudonymisation that still joins), the key read from the environment."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Literal

from pydantic import Field

from headwater import fields
from headwater.fields import Record
from streams.transforms.base import Step


class Hash(Step):
    op: Literal["hash"]
    fields_: list[str] = Field(alias="fields", min_length=1, description="Dotted paths of the fields to hash.")
    algorithm: Literal["sha256", "sha1", "md5", "blake2b"] = Field("sha256", description="Digest algorithm.")
    key_env: str | None = Field(
        None, description="Environment variable holding the HMAC key (secrets never go in pipeline files)."
    )

    def apply(self, record: Record) -> None:
        key = os.environ.get(self.key_env, "").encode() if self.key_env else b""
        for name in self.fields_:
            path = fields.split(name)
            value = fields.get(record, path)
            if value is None:
                continue
            data = str(value).encode("utf-8")
            digest = hmac.new(key, data, self.algorithm) if key else hashlib.new(self.algorithm, data)
            fields.put(record, path, digest.hexdigest())
