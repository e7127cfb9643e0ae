"""API keys are stored as salted scrypt hashes (`scrypt$n$r$p$salt$hash`, base64url): a leaked config file does not
give the keys away, and guessing one costs a memory-hard hash per try."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# ~16 MiB and a few tens of milliseconds per hash: slow for a guesser, affordable once per key (results are cached)
COST, BLOCK_SIZE, PARALLELISM = 2**14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
KEY_PREFIX = "hw_"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(key: str, salt: bytes, cost: int, block_size: int, parallelism: int) -> bytes:
    return hashlib.scrypt(
        key.encode(), salt=salt, n=cost, r=block_size, p=parallelism, dklen=HASH_BYTES, maxmem=256 * 1024 * 1024
    )


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of `key`, with a new random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(key, salt, COST, BLOCK_SIZE, PARALLELISM)
    return f"{SCHEME}${COST}${BLOCK_SIZE}${PARALLELISM}${_b64(salt)}${_b64(digest)}"


def parse_stored(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(cost, block size, parallelism, salt, hash) of a stored form; ValueError saying what is wrong."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError("not a stored API key hash (scrypt$n$r$p$salt$hash, from `headwater auth hash-key`)")
    try:
        cost, block_size, parallelism = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("stored API key hash has a malformed number or base64 part") from None
    if cost < 2 or cost & (cost - 1) or block_size < 1 or parallelism < 1 or len(digest) != HASH_BYTES:
        raise ValueError("stored API key hash has impossible scrypt parameters")
    return cost, block_size, parallelism, salt, digest


def verify_key(key: str, stored: str) -> bool:
    """Whether `key` hashes to `stored` (compared in constant time)."""
    cost, block_size, parallelism, salt, digest = parse_stored(stored)
    return hmac.compare_digest(_scrypt(key, salt, cost, block_size, parallelism), digest)
